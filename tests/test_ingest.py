"""Ingest: exact statistics, mergeable partials, idempotence, bad images, atomicity under kill -9."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import numpy as np
import pytest
from PIL import Image
from scipy import stats

from conftest import real_patches, write_imagefolder
from metadb import api
from metadb.errors import MetadbError

CLASSES = {"brick": "brick", "grass": "grass", "gravel": "gravel"}


def _rows(db, sql, params=()):
    con = duckdb.connect(db, read_only=True)
    try:
        return con.execute(sql, list(params)).fetchall()
    finally:
        con.close()


def _features(db, dataset):
    return dict(_rows(db, "SELECT name, value FROM meta_features WHERE dataset = ?", [dataset]))


@pytest.fixture
def textures(tmp_path) -> Path:
    return write_imagefolder(tmp_path / "tex", CLASSES, size=64, n=5)


def test_statistics_match_a_direct_numpy_computation(db, textures):
    result = api.ingest(db, path=textures, name="tex", workers=1)
    assert (result.status, result.images_ok, result.images_failed) == ("ingested", 15, 0)
    pixels = np.concatenate([np.asarray(Image.open(p), dtype=np.float64).ravel() / 255.0
                             for p in sorted(textures.rglob("*.png"))])
    f = _features(db, "tex")
    assert f["n_images"] == 15 and f["n_classes"] == 3 and f["imbalance_ratio"] == 1.0
    assert f["class_entropy"] == pytest.approx(np.log2(3), abs=1e-12)
    assert f["intensity_mean"] == pytest.approx(pixels.mean(), abs=1e-6)  # float32 luma
    assert f["intensity_std"] == pytest.approx(pixels.std(), abs=1e-6)
    assert f["intensity_skewness"] == pytest.approx(stats.skew(pixels), abs=1e-4)
    assert f["intensity_kurtosis"] == pytest.approx(stats.kurtosis(pixels), abs=1e-4)
    hist = np.bincount(np.round(pixels * 255).astype(int), minlength=256)
    assert f["histogram_entropy"] == pytest.approx(stats.entropy(hist, base=2), abs=1e-9)
    assert f["width_median"] == 64 and f["channels_mode"] == 1 and f["bit_depth_max"] == 8
    assert _rows(db, "SELECT label, count FROM classes WHERE dataset = 'tex' ORDER BY label") == [
        ("brick", 5), ("grass", 5), ("gravel", 5)]
    per_image = _rows(db, "SELECT count(*), count(DISTINCT phash), min(width), max(height) FROM images WHERE dataset='tex'")
    assert per_image == [(15, 15, 64, 64)]


def test_parallel_chunks_merge_to_the_single_pass_answer(tmp_path):
    folder = write_imagefolder(tmp_path / "tex", CLASSES, size=32, n=60)  # 180 images: 3 chunks
    one, two = str(tmp_path / "one.duckdb"), str(tmp_path / "two.duckdb")
    api.ingest(one, path=folder, name="tex", workers=1)
    api.ingest(two, path=folder, name="tex", workers=2)
    a, b = _features(one, "tex"), _features(two, "tex")
    assert a.keys() == b.keys()
    for k in a:
        assert b[k] == pytest.approx(a[k], rel=1e-12, abs=1e-15), k
    q = "SELECT image_id, phash, intensity_mean FROM images ORDER BY image_id"
    assert _rows(one, q) == _rows(two, q)


def test_reingest_is_a_no_op_until_the_data_changes(db, textures):
    api.ingest(db, path=textures, name="tex", workers=1)
    assert api.ingest(db, path=textures, name="tex", workers=1).status == "up-to-date"
    assert api.ingest(db, path=textures, name="tex", workers=1, force=True).status == "ingested"
    Image.fromarray(real_patches("camera", 64, 1)[0]).save(textures / "brick" / "new.png")
    again = api.ingest(db, path=textures, name="tex", workers=1)
    assert (again.status, again.images_ok) == ("ingested", 16)
    assert _rows(db, "SELECT n_images FROM datasets WHERE name = 'tex'") == [(16,)]
    assert _rows(db, "SELECT count(*) FROM images WHERE dataset = 'tex'") == [(16,)]
    assert _rows(db, "SELECT count(*) FROM ingest_runs WHERE dataset = 'tex'") == [(3,)]


def _bad_images(folder: Path) -> dict[str, str]:
    good = io.BytesIO()
    Image.fromarray(real_patches("camera", 128, 1)[0]).save(good, "JPEG")
    (folder / "brick" / "empty.png").write_bytes(b"")
    (folder / "brick" / "truncated.jpg").write_bytes(good.getvalue()[: len(good.getvalue()) // 3])
    (folder / "grass" / "garbage.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 50)
    (folder / "grass" / "notes.tif").write_text("not an image at all")
    return {"brick/empty.png": "zero-byte", "brick/truncated.jpg": "not a readable image",
            "grass/garbage.png": "not a readable image", "grass/notes.tif": "not a readable image"}


def test_bad_images_are_recorded_and_skipped(db, textures):
    expected = _bad_images(textures)
    result = api.ingest(db, path=textures, name="tex", workers=1)
    assert (result.images_ok, result.images_failed) == (15, 4)
    errors = dict(_rows(db, "SELECT path, reason FROM ingest_errors WHERE dataset = 'tex'"))
    assert errors.keys() == expected.keys()
    for path, reason in expected.items():
        assert errors[path].startswith(reason), (path, errors[path])
        assert "\n" not in errors[path]
    assert _rows(db, "SELECT images_ok, images_failed FROM ingest_runs") == [(15, 4)]


def test_strict_fails_on_the_first_bad_image_and_writes_nothing(db, textures, tmp_path):
    other = write_imagefolder(tmp_path / "other", {"a": "camera"}, size=64, n=2)
    api.ingest(db, path=other, name="other", workers=1)
    before = _rows(db, "SELECT name, n_images, fingerprint FROM datasets")
    _bad_images(textures)
    with pytest.raises(MetadbError, match=r"brick/empty.png: zero-byte file; fix or remove it"):
        api.ingest(db, path=textures, name="tex", workers=1, strict=True)
    assert _rows(db, "SELECT name, n_images, fingerprint FROM datasets") == before
    assert _rows(db, "SELECT count(*) FROM images WHERE dataset = 'tex'") == [(0,)]
    assert not Path(f"{db}.staging").exists()


def test_large_jpeg_is_decoded_at_the_working_resolution_and_header_size_kept(db, tmp_path):
    folder = tmp_path / "big" / "fundus"
    folder.mkdir(parents=True)
    import skimage.data

    Image.fromarray(skimage.data.retina()[:1024, :1024]).save(folder / "a.jpg", quality=90)
    api.ingest(db, path=tmp_path / "big", name="big", workers=1, working_size=128)
    assert _rows(db, "SELECT width, height, channels, format FROM images") == [(1024, 1024, 3, "jpeg")]
    params = _rows(db, "SELECT params FROM ingest_runs")[0][0]
    assert '"working_size": 128' in params


def test_sixteen_bit_tiff_is_scaled_not_clipped(db, tmp_path):
    folder = tmp_path / "ct" / "slice"
    folder.mkdir(parents=True)
    a = (real_patches("camera", 64, 1)[0].astype(np.uint16) * 257)  # full 16-bit range
    Image.fromarray(a).save(folder / "a.tif")
    api.ingest(db, path=tmp_path / "ct", name="ct", workers=1)
    assert _rows(db, "SELECT bit_depth FROM images") == [(16,)]
    assert _features(db, "ct")["intensity_mean"] == pytest.approx(a.mean() / 65535, abs=1e-5)


def _digits_csv(root: Path, copies: int) -> Path:
    """The 1,797 real sklearn digits, `copies` times over, in the csv layout."""
    from sklearn.datasets import load_digits

    (root / "img").mkdir(parents=True)
    lines = ["path,label"]
    digits = load_digits()
    for c in range(copies):
        for k, (img, y) in enumerate(zip(digits.images, digits.target)):
            rel = f"img/{c}_{k}.png"
            Image.fromarray((img * 15).astype(np.uint8)).save(root / rel)
            lines.append(f"{rel},{y}")
    (root / "labels.csv").write_text("\n".join(lines) + "\n")
    return root / "labels.csv"


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT])
def test_killed_ingest_leaves_the_store_as_it_was_and_the_next_run_completes(db, tmp_path, sig):
    api.ingest(db, path=write_imagefolder(tmp_path / "keep", {"a": "camera"}, size=64, n=3), name="keep", workers=1)
    snapshot = "SELECT name, n_images, fingerprint FROM datasets ORDER BY name"
    before = _rows(db, snapshot)
    csv = _digits_csv(tmp_path / "digits", copies=3)
    listed = csv.read_text()
    os.mkfifo(csv.parent / "img" / "pipe.png")  # decoding blocks here until the test writes it
    lines = listed.splitlines()
    csv.write_text("\n".join(lines[:2000] + ["img/pipe.png,0"] + lines[2000:]) + "\n")
    env = {**os.environ, "METADB_DB": db}
    proc = subprocess.Popen([sys.executable, "-m", "metadb.cli", "ingest", "--path", str(csv), "--name", "digits",
                             "--workers", "2"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    fd = _open_fifo_for_writing(csv.parent / "img" / "pipe.png", proc)  # the ingest is now mid-decoding
    try:
        assert proc.poll() is None, "ingest finished before it could be interrupted"
        proc.send_signal(sig)
        if sig == signal.SIGINT:  # the driver alone got Ctrl-C: let a worker blocked on the FIFO finish its read
            time.sleep(1)
            os.close(fd)
            fd = None
        proc.wait(timeout=60)
    finally:
        if fd is not None:
            os.close(fd)  # lets a worker orphaned by SIGKILL see EOF and end (it holds the output pipes)
    out, err = proc.communicate(timeout=60)
    staging = Path(f"{db}.staging")
    assert proc.returncode != 0
    if sig == signal.SIGINT:
        assert "interrupted; the store is unchanged" in err and "Traceback" not in err
    assert _rows(db, snapshot) == before
    assert _rows(db, "SELECT count(*) FROM images WHERE dataset = 'digits'") == [(0,)]
    csv.write_text(listed)
    result = api.ingest(db, path=csv, name="digits", workers=2)
    assert (result.status, result.images_ok) == ("ingested", 3 * 1797)
    assert not staging.exists()


def _open_fifo_for_writing(fifo: Path, proc: subprocess.Popen, timeout: float = 60) -> int:
    """Blocks (politely) until the ingest opens the FIFO to decode it: then it is mid-decoding."""
    deadline = time.time() + timeout
    while True:
        try:
            return os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        except OSError:  # ENXIO: nobody is reading it yet
            if proc.poll() is not None:
                raise AssertionError(f"ingest ended before decoding: {proc.communicate()}") from None
            assert time.time() < deadline, "ingest never started decoding"
            time.sleep(0.02)


def test_readers_work_while_an_ingest_decodes_and_a_writer_waits_for_the_commit(db, tmp_path):
    """A real ingest process is held in the middle of decoding (one listed image is a FIFO that
    blocks until written); meanwhile `metadb sql`, `duckdb -readonly` and another writer use the store."""
    from test_duckdb_cli import _duckdb_cli

    api.ingest(db, path=write_imagefolder(tmp_path / "keep", {"a": "camera"}, size=64, n=3), name="keep", workers=1)
    root = tmp_path / "slow"
    write_imagefolder(root, {"b": "brick"}, size=64, n=4)
    os.mkfifo(root / "b" / "pipe.png")
    lines = ["path,label"] + [f"b/{k}.png,b" for k in range(2)] + ["b/pipe.png,b"] + [f"b/{k}.png,b" for k in (2, 3)]
    (root / "labels.csv").write_text("\n".join(lines) + "\n")
    proc = subprocess.Popen([sys.executable, "-m", "metadb.cli", "ingest", "--path", str(root / "labels.csv"),
                             "--name", "slow", "--workers", "1", "--db", db],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        fd = _open_fifo_for_writing(root / "b" / "pipe.png", proc)
        try:
            assert api.sql("SELECT name, n_images FROM datasets", db)[1] == [("keep", 3)]
            cli = subprocess.run([_duckdb_cli(), "-readonly", "-csv", db, "-c", "SELECT count(*) AS n FROM images"],
                                 capture_output=True, text=True, timeout=60)
            assert (cli.returncode, cli.stdout) == (0, "n\n3\n"), cli.stderr
            api.ingest(db, path=write_imagefolder(tmp_path / "other", {"c": "coins"}, size=64, n=2), name="other",
                       workers=1)  # another writer commits while the first one decodes
            png = io.BytesIO()
            Image.fromarray(real_patches("cell", 64, 1)[0]).save(png, "PNG")
            os.set_blocking(fd, True)
            os.write(fd, png.getvalue())
        finally:
            os.close(fd)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert out.startswith("slow: 5 images ingested")
    assert _rows(db, "SELECT name, n_images FROM datasets ORDER BY name") == [("keep", 3), ("other", 2), ("slow", 5)]


def test_a_second_writer_fails_in_one_line_or_waits(runner, db, tmp_path):
    from metadb.cli import cli

    folder = write_imagefolder(tmp_path / "x", {"a": "camera"}, size=64, n=2)
    api.ingest(db, path=folder, name="keep", workers=1)
    holder = subprocess.Popen([sys.executable, "-c", "import duckdb, sys, time; con = duckdb.connect(sys.argv[1]); "
                               "print('locked', flush=True); sys.stdin.readline(); time.sleep(1); con.close()", db],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        r = runner.invoke(cli, ["ingest", "--path", str(folder), "--name", "x", "--workers", "1", "--db", db])
        assert r.exit_code == 1 and len(r.output.strip().splitlines()) == 1, r.output
        assert r.output.startswith(f"Error: store {db} is in use by another metadb process (PID {holder.pid})")
        holder.stdin.write("go\n")
        holder.stdin.flush()
        r = runner.invoke(cli, ["ingest", "--path", str(folder), "--name", "x", "--workers", "1", "--db", db,
                                "--wait", "60"])
        assert r.exit_code == 0, r.output
        assert r.output.startswith("x: 2 images ingested")
    finally:
        holder.communicate("", timeout=30)


# --- names, encodings, folders and duplicates the loaders cannot use (issue 9, item 15) -------
def _errors(db):
    return _rows(db, "SELECT path, reason FROM ingest_errors ORDER BY path")


def test_non_utf8_file_and_class_names_are_recorded_not_fatal(runner, db, tmp_path):
    from metadb.cli import cli

    root = write_imagefolder(tmp_path / "tex", {"ok": "brick", "cafe": "grass"}, size=64, n=2)
    os.rename(root / "cafe", os.fsencode(root) + b"/caf\xe9")  # a Latin-1 folder name, as old archives have
    os.rename(root / "ok" / "0.png", os.fsencode(root / "ok") + b"/x\xff.png")
    r = runner.invoke(cli, ["ingest", "--path", str(root), "--name", "tex", "--workers", "1", "--db", db])
    assert r.exit_code == 0, r.output
    assert r.output.startswith("tex: 1 images ingested") and ", 3 skipped (see ingest_errors)" in r.output
    assert "skipped caf\\xe9/0.png: file or folder name is not valid UTF-8" in r.output
    reason = "file or folder name is not valid UTF-8; rename it (e.g. convmv -f latin1 -t utf8 --notest -r FOLDER)"
    assert _errors(db) == [("caf\\xe9/0.png", reason), ("caf\\xe9/1.png", reason), ("ok/x\\xff.png", reason)]
    assert _rows(db, "SELECT label, count FROM classes") == [("ok", 1)]


def test_latin1_labels_csv_is_a_one_line_error(runner, db, tmp_path):
    from metadb.cli import cli

    write_imagefolder(tmp_path / "d", {"img": "brick"}, size=64, n=2)
    (tmp_path / "d" / "labels.csv").write_bytes("path,label\nimg/0.png,névus\nimg/1.png,mélanome\n".encode("latin-1"))
    r = runner.invoke(cli, ["ingest", "--path", str(tmp_path / "d" / "labels.csv"), "--workers", "1", "--db", db])
    assert r.exit_code == 1 and len(r.output.strip().splitlines()) == 1, r.output
    assert r.output.strip() == (f"Error: {tmp_path / 'd' / 'labels.csv'} line 2: byte 0xe9 is not UTF-8 (the file looks "
                                "like Latin-1 or Windows-1252); save it as UTF-8, e.g. iconv -f latin1 -t utf-8 "
                                "labels.csv > fixed.csv")


def test_csv_listing_a_path_twice_counts_it_once_and_says_so(db, tmp_path):
    write_imagefolder(tmp_path / "d", {"img": "brick"}, size=64, n=3)
    csv = tmp_path / "d" / "labels.csv"
    csv.write_text("path,label\nimg/0.png,a\nimg/1.png,b\n./img/0.png,a\nimg/2.png,b\n")
    result = api.ingest(db, path=csv, name="d", workers=1)
    assert (result.images_ok, result.images_failed) == (3, 1)
    assert _errors(db) == [("./img/0.png", "listed twice in labels.csv (lines 2 and 4); counted once")]
    assert _rows(db, "SELECT label, count FROM classes ORDER BY label") == [("a", 1), ("b", 2)]
    csv.write_text("path,label\nimg/0.png,a\nimg/1.png,b\nimg/0.png,b\n")
    with pytest.raises(MetadbError, match=r"labels.csv lines 2 and 4 both list img/0.png, as a and b; keep the row"):
        api.ingest(db, path=csv, name="d", workers=1)


def test_symlinked_class_folders_are_followed_once_and_broken_links_recorded(db, tmp_path):
    root = write_imagefolder(tmp_path / "tex", {"brick": "brick"}, size=64, n=2)
    elsewhere = write_imagefolder(tmp_path / "elsewhere", {"grass": "grass"}, size=64, n=3)
    (root / "grass").symlink_to(elsewhere / "grass")  # a class assembled from another folder
    (root / "grass-again").symlink_to(elsewhere / "grass")  # the same images a second time
    (root / "gone").symlink_to(tmp_path / "deleted")
    result = api.ingest(db, path=root, name="tex", workers=1)
    assert result.images_ok == 5
    assert result.notes == [f"followed symlinked folder {root / 'grass'} -> {elsewhere / 'grass'}"]
    assert _errors(db) == [("gone", f"broken symlink to {tmp_path / 'deleted'}; not read"),
                           ("grass-again", f"same folder as {root / 'grass'} (symlink); its images are read once")]
    assert _rows(db, "SELECT label, count FROM classes ORDER BY label") == [("brick", 2), ("grass", 3)]


def test_an_unreadable_class_folder_is_recorded(db, tmp_path):
    """Run as a real process without the power to read what its permissions forbid (root gets it
    dropped with setpriv, since root reads any folder)."""
    import shutil

    root = write_imagefolder(tmp_path / "tex", {"brick": "brick", "grass": "grass"}, size=64, n=2)
    prefix = []
    if os.geteuid() == 0:
        if not shutil.which("setpriv"):
            pytest.skip("running as root without setpriv: cannot make a folder unreadable")
        prefix = ["setpriv", "--bounding-set=-dac_override,-dac_read_search"]
    (root / "grass").chmod(0)
    try:
        run = subprocess.run(prefix + [sys.executable, "-m", "metadb.cli", "ingest", "--path", str(root), "--name", "tex",
                                       "--workers", "1", "--db", db], capture_output=True, text=True, timeout=120)
    finally:
        (root / "grass").chmod(0o755)
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("tex: 2 images ingested") and "1 skipped" in run.stdout
    assert _errors(db) == [("grass", "cannot list folder (Permission denied); its images were not read")]


FAULTS = """
import resource, sys
from dataclasses import replace
from metadb import ingest
from metadb.loaders import create_loader
info, folder = ingest.resolve(None, sys.argv[1], "faults", None, None, None)
loader = create_loader(info.layout, folder, **info.loader_params())
exts = ingest._extractors(ingest.DEFAULT_EXTRACTORS, 256)
task = ingest.plan_shards(info, folder, loader, exts, 256)[0]
ingest.ingest_shard(replace(task, part=sys.argv[2] + "/warm.parquet"))  # imports, first buffers
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
result = ingest.ingest_shard(replace(task, part=sys.argv[2] + "/timed.parquet"))
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / result.n_ok)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator thresholds")
def test_a_shard_reuses_its_image_buffers_instead_of_faulting_them_in_per_image(tmp_path):
    """Each 1024 px JPEG's decode buffers come from the heap again, not from fresh pages.

    With glibc's thresholds left where they were, a shard took about 1,000 minor page faults per
    image (4 MB of buffers zeroed by the kernel each time: 28% of ingest's CPU); reused, ~5.
    """
    import skimage.data

    base = Image.fromarray(skimage.data.astronaut()).resize((1024, 1024))
    for k in range(40):
        (tmp_path / "img" / f"c{k % 2}").mkdir(parents=True, exist_ok=True)
        base.rotate(k * 9).save(tmp_path / "img" / f"c{k % 2}" / f"{k}.jpg", quality=90)
    out = subprocess.run([sys.executable, "-c", FAULTS, str(tmp_path / "img"), str(tmp_path)], check=True,
                         capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(Path.cwd())})
    faults_per_image = float(out.stdout.split()[-1])
    assert faults_per_image < 100, faults_per_image
