"""`reference build` reports its progress while reading the file (streams.files.read_rows)."""
from __future__ import annotations

from streams.files import read_rows


def test_reading_a_csv_and_a_jsonl_reports_progress_up_to_the_file_size(tmp_path):
    csv_file = tmp_path / "ref.csv"
    csv_file.write_text("a,b\n" + "".join(f"{i},x\n" for i in range(3500)))
    jsonl_file = tmp_path / "ref.jsonl"
    jsonl_file.write_bytes(b"".join(b'{"a": %d}\n' % i for i in range(2500)))
    for path, rows in ((csv_file, 3500), (jsonl_file, 2500)):
        seen: list[int] = []
        columns = read_rows(path, progress=seen.append)
        assert len(columns["a"]) == rows
        assert len(seen) >= 3 and seen == sorted(seen) and 0 < seen[-1] <= path.stat().st_size
