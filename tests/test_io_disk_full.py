"""Issue 16 B1: a file-size limit (as on a full disk) never yields a truncated image or loses the old file."""

import subprocess
import sys
import textwrap

import pytest

CHILD = textwrap.dedent("""
    import sys, torch
    from tunableconv.errors import InputError
    from tunableconv.io import write_image
    torch.manual_seed(0)
    try:
        write_image(torch.rand(3, 96, 96), sys.argv[1])  # 10-30 kB encoded: one encoder write, cut short at 4 kB
    except InputError as err:
        print(err); sys.exit(2)
""")


@pytest.mark.parametrize("ext", [".jpg", ".bmp", ".png", ".webp", ".tif"])
def test_write_under_file_size_limit_fails_cleanly_and_keeps_the_old_file(tmp_path, ext):
    out = tmp_path / f"k{ext}"
    out.write_bytes(b"old")
    # ulimit -f 4: at most 4 KiB per file (a random 96x96 image is bigger in every format)
    proc = subprocess.run(["bash", "-c", f'ulimit -f 4; exec "{sys.executable}" -c "$0" "{out}"', CHILD],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"cannot write {out}"), proc.stdout
    assert out.read_bytes() == b"old"  # the old file is kept
    assert sorted(p.name for p in tmp_path.iterdir()) == [out.name]  # no temporary file left behind
