# The Faust app module declares topics and agents at import time: not a doctest target.
collect_ignore = ["streams/app.py"]
