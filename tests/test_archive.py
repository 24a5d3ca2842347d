"""Scoring an archive: rows streamed as they are ready, --resume after a kill, bounded memory, progress on a
terminal, and Ray giving the rows the local engine gives."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import shutil
import signal
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import synthetic_xray
from PIL import Image

from pneumonia.archive.writers import COLUMNS, CsvRows, ParquetParts
from pneumonia.cli import EXIT_SOME_REFUSED, main
from pneumonia.config import METADATA_FILENAME
from pneumonia.screening.predictor import load_predictor
from pneumonia.wording import ADULT_LOOK

ROOT = Path(__file__).resolve().parents[1]


def write_films(folder: Path, count: int, size: int = 64) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        path = folder / f"film{i:05d}.png"
        Image.fromarray(synthetic_xray(i % 2, i, size)).save(path)
        paths.append(path)
    return paths


def run_predict(*args: str, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "pneumonia", "predict", *args], cwd=ROOT, env=env, **kwargs)


def test_rows_are_appended_per_chunk_and_a_half_written_row_is_cut_on_resume(tmp_path):
    path = tmp_path / "rows.csv"
    rows = pd.DataFrame({"file": ["a", "b"], "status": ["ok", "refused"], "probability": [0.5, None],
                         "label": ["PNEUMONIA", ""], "threshold": [0.5, 0.5], "reason": ["", "the file is empty"]})
    writer = CsvRows(path)
    writer.write(rows.iloc[:1])
    assert pd.read_csv(path).file.tolist() == ["a"]  # on disk before the next chunk exists
    writer.write(rows.iloc[1:])
    with open(path, "a") as handle:
        handle.write("c,ok,0.7,PNEU")  # a kill mid-write
    resumed = CsvRows(path, resume=True)
    assert resumed.done == {"a", "b"}
    assert pd.read_csv(path).file.tolist() == ["a", "b"]  # valid again: the half row is gone
    assert list(pd.read_csv(path).columns) == COLUMNS


def test_parquet_parts_are_each_complete_and_resume_reads_them(tmp_path):
    rows = pd.DataFrame({"file": ["a"], "status": ["ok"], "probability": [0.5], "label": ["PNEUMONIA"],
                         "threshold": [0.5], "reason": [""]})
    ParquetParts(tmp_path / "out").write(rows)
    (tmp_path / "out" / "part-000001.parquet.tmp").write_bytes(b"PAR1 half")  # a kill mid-write: not a part
    resumed = ParquetParts(tmp_path / "out", resume=True)
    assert resumed.done == {"a"}
    resumed.write(rows.assign(file="b"))
    assert pd.read_parquet(tmp_path / "out").file.tolist() == ["a", "b"]


def test_predict_streams_csv_and_parquet_in_input_order_with_workers(tiny_predictor, tmp_path, capsys):
    films = write_films(tmp_path / "films", 70)  # enough to start the worker processes
    (tmp_path / "films" / "broken.png").write_bytes(b"\x89PNG broken")
    out = tmp_path / "out.csv"
    code = main(["predict", str(tmp_path / "films"), "--csv", str(out), "--parquet", str(tmp_path / "parts"),
                 "--chunk-size", "16", "--workers", "2", "--model-dir", str(tiny_predictor.model_dir)])
    assert code == EXIT_SOME_REFUSED
    table = pd.read_csv(out)
    expected = sorted([str(p) for p in films] + [str(tmp_path / "films" / "broken.png")])
    assert table.file.tolist() == expected  # every file once, in input order
    assert pd.read_parquet(tmp_path / "parts").file.tolist() == expected
    assert len(list((tmp_path / "parts").glob("part-*.parquet"))) == 5  # 71 files in chunks of 16
    alone = tiny_predictor.screen([(str(p), p) for p in films[:3]])
    np.testing.assert_allclose(table.probability.iloc[1:4], [r.probability for r in alone], atol=1e-5)
    assert "71" not in capsys.readouterr().out  # one line per film on stdout, no progress bar off a terminal


def test_a_killed_run_resumes_and_every_file_is_written_exactly_once(tiny_model_dir, tmp_path):
    films = write_films(tmp_path / "films", 1500, size=40)
    out = tmp_path / "out.csv"
    args = [str(tmp_path / "films"), "--csv", str(out), "--chunk-size", "8", "--workers", "0", "--quiet",
            "--model-dir", str(tiny_model_dir)]
    process = run_predict(*args)
    deadline = time.monotonic() + 120
    while (not out.exists() or out.stat().st_size < 2000) and time.monotonic() < deadline:
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    written = pd.read_csv(out, on_bad_lines="skip")
    assert 0 < len(written) < len(films), "the run finished before it could be killed; make it longer"
    resumed = run_predict(*args, "--resume")
    assert resumed.wait(timeout=300) in (0, EXIT_SOME_REFUSED)  # the tiny model's gate refuses a few synthetic films
    table = pd.read_csv(out)
    assert sorted(table.file) == sorted(str(p) for p in films)  # every file exactly once
    assert table.file.is_unique


def test_ctrl_c_leaves_a_valid_csv_and_says_how_to_finish(tiny_model_dir, tmp_path):
    write_films(tmp_path / "films", 3000, size=40)
    out = tmp_path / "out.csv"
    process = run_predict(str(tmp_path / "films"), "--csv", str(out), "--chunk-size", "8", "--workers", "0",
                          "--quiet", "--model-dir", str(tiny_model_dir), stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while (not out.exists() or out.stat().st_size < 2000) and time.monotonic() < deadline:
        time.sleep(0.01)
    process.send_signal(signal.SIGINT)  # once: the run finishes the chunk in hand, then stops
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, "the run finished before it could be interrupted; make it longer"
    assert "run the same command with --resume to finish" in err
    assert pd.read_csv(out).file.is_unique  # parses: no half row


def _peak_rss_mb_of_predict(folder: Path, model_dir: Path) -> float:
    """Peak RSS of a predict run, measured in a child that runs it (ru_maxrss of the child's children)."""
    code = (
        "import resource, subprocess, sys; "
        f"subprocess.run([sys.executable, '-m', 'pneumonia', 'predict', {str(folder)!r}, '--quiet', '--workers', '0', "
        f"'--model-dir', {str(model_dir)!r}], check=False); "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
    )
    output = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    return int(output.stdout.split()[-1]) / 1024


def test_memory_does_not_grow_with_the_number_of_large_films(tiny_model_dir, tmp_path):
    film = Image.fromarray(synthetic_xray(1, 3, 256)).resize((2048, 2048), Image.BILINEAR)
    data = (tmp_path / "one.png")
    film.save(data)
    for count in (50, 200):
        folder = tmp_path / str(count)
        folder.mkdir()
        for i in range(count):
            (folder / f"f{i:04d}.png").write_bytes(data.read_bytes())
    fifty, two_hundred = (_peak_rss_mb_of_predict(tmp_path / str(n), tiny_model_dir) for n in (50, 200))
    assert two_hundred <= 1.25 * fifty, (fifty, two_hundred)


def test_progress_bar_on_a_terminal(tiny_model_dir, tmp_path):
    write_films(tmp_path / "films", 20)
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # a 100-column terminal
    process = run_predict(str(tmp_path / "films"), "--model-dir", str(tiny_model_dir), stdout=subprocess.DEVNULL,
                          stderr=follower)
    os.close(follower)
    output = b""
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        output += chunk
    assert process.wait(timeout=120) == 0
    text = output.decode(errors="replace")
    assert "20/20" in text and "film/s" in text  # tqdm's bar: count and rate


def adult_looking_model(tiny_model_dir: Path, folder: Path, films: list[Path]) -> Path:
    """The tiny model with its adult caution's thresholds moved so that every film passes the prescreen and about
    half of `films` are told they look adult by the backbone: the rows where the 224-px film must travel with its
    own row."""
    from pneumonia.io.images import read_input, to_model_input
    from pneumonia.screening.adult_caution import adult_features
    from pneumonia.screening.predictor import load_predictor

    shutil.copytree(tiny_model_dir, folder)
    adult = load_predictor(folder).gate.adult
    distances = adult.backbone.distance(adult_features(
        np.stack([to_model_input(read_input(p).grey, adult.config.size) for p in films]), adult.config))
    metadata_path = folder / METADATA_FILENAME
    metadata = json.loads(metadata_path.read_text())
    metadata["gate"]["adult"].update(prescreen_threshold=-1.0, threshold=float(np.median(distances)))
    metadata_path.write_text(json.dumps(metadata))
    return folder


def test_ray_gives_the_rows_the_local_engine_and_the_app_give(tiny_model_dir, tmp_path):
    """Adult cautions included: the Ray engine carries the adult caution's film in its own column."""
    pytest.importorskip("ray", reason="Ray is optional: pip install '.[ray]'")
    films = write_films(tmp_path / "films", 12)
    (tmp_path / "films" / "photo.png").write_bytes(b"not an image")
    model_dir = adult_looking_model(tiny_model_dir, tmp_path / "model", films)
    screened = load_predictor(model_dir).screen([(p.name, p) for p in films])
    told = [ADULT_LOOK in r.reason for r in screened]
    assert 3 <= sum(told) <= 9, told  # the caution fires on some rows and not others
    local, on_ray = tmp_path / "local.csv", tmp_path / "ray.csv"
    common = [str(tmp_path / "films"), "--quiet", "--chunk-size", "5", "--model-dir", str(model_dir)]
    assert main(["predict", *common, "--csv", str(local)]) == EXIT_SOME_REFUSED
    a = pd.read_csv(local)
    rows = a.set_index(a.file.map(lambda f: Path(f).name)).loc[[p.name for p in films]]
    assert rows.status.tolist() == [r.status for r in screened] and rows.reason.fillna("").tolist() == [
        r.reason for r in screened]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RAY_ADDRESS": "", "RAY_num_cpus": "2"}
    ray_run = subprocess.run([sys.executable, "-m", "pneumonia", "predict", *common, "--csv", str(on_ray),
                              "--engine", "ray"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert ray_run.returncode == EXIT_SOME_REFUSED, ray_run.stderr[-2000:]
    b = pd.read_csv(on_ray)
    assert a.file.tolist() == b.file.tolist() and a.status.tolist() == b.status.tolist()
    assert a.reason.fillna("").tolist() == b.reason.fillna("").tolist()
    np.testing.assert_allclose(a.probability, b.probability, atol=1e-5)
