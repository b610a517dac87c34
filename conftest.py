# Hypothesis keeps caches (and its example database) in ./.hypothesis by default: put them in a
# temporary folder, so tests leave nothing in the repository.
import tempfile

from hypothesis.configuration import set_hypothesis_home_dir

set_hypothesis_home_dir(tempfile.mkdtemp(prefix="driftline-hypothesis-"))
