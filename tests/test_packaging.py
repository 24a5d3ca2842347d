"""Packaging (pyproject, console script, licence files, the wheel) and a CLI quiet about TensorFlow's own logs."""

from __future__ import annotations

import importlib
import os
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

import pneumonia

REPO = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
SAMPLE = REPO / "assets" / "samples" / "normal_IM-0001-0001.jpeg"
LEVEL = "TF_CPP_MIN_LOG_LEVEL"

# TensorFlow/XLA/absl C++ log lines ("I0000 00:00:... cudart_stub.cc:31] ..."), absl's pre-init warning,
# CUDA probing, oneDNN and TF-TRT notices. Our own lines ("error: ...", "warning: ...", the summary) match none.
NOISE = re.compile(
    r"(^|\s)[IWEF]\d{4} |absl|cuda|cuInit|oneDNN|tensorflow/|TF-TRT|computation placer|cpu_feature_guard"
)


def _normalised(lines) -> set[str]:
    return {str(Requirement(line)) for line in lines}


def _requirements_txt() -> set[str]:
    lines = (line.split(" #")[0].strip() for line in (REPO / "requirements.txt").read_text().splitlines())
    return _normalised(line for line in lines if line and not line.startswith("#"))


def _noise(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if NOISE.search(line)]


def _run_cli(*args: str, env_update: dict | None = None) -> subprocess.CompletedProcess:
    return _run_python("-m", "pneumonia", *args, env_update=env_update)


def _run_python(*args: str, env_update: dict | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}  # as a user's shell would have it
    env.update(env_update or {})
    return subprocess.run(
        [sys.executable, *args],
        check=False,
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


# --- pyproject.toml -------------------------------------------------------------------------------------------


def test_project_dependencies_are_exactly_requirements_txt():
    assert _normalised(PYPROJECT["project"]["dependencies"]) == _requirements_txt()


def test_project_metadata_names_version_python_and_licence():
    project = PYPROJECT["project"]
    assert project["requires-python"] == ">=3.11"
    assert project["license"] == "Apache-2.0"
    assert set(project["license-files"]) == {"LICENSE", "NOTICE"}
    assert "version" in project.get("dynamic", []) or project["version"] == pneumonia.__version__
    if "version" in project.get("dynamic", []):
        assert PYPROJECT["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "pneumonia.__version__"}
    assert PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"] == ["pneumonia", "pneumonia.*"]


def test_console_script_is_the_same_cli_as_python_m_pneumonia(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "100")  # the same help layout in this process and the child
    module_name, _, attribute = PYPROJECT["project"]["scripts"]["pneumonia"].partition(":")
    entry = getattr(importlib.import_module(module_name), attribute)
    with pytest.raises(SystemExit) as exit_info:
        entry(["--help"])
    assert exit_info.value.code == 0
    usage = capsys.readouterr().out
    for command in ("train", "evaluate", "predict", "--verbose"):
        assert command in usage
    assert _run_cli("--help").stdout == usage


def test_licence_and_notice_files():
    licence = (REPO / "LICENSE").read_text()
    assert "Apache License" in licence and "Version 2.0, January 2004" in licence
    assert "END OF TERMS AND CONDITIONS" in licence  # the full text, not a stub
    notice = (REPO / "NOTICE").read_text()
    assert "CC BY 4.0" in notice and "10.17632/rscbjbr9sj.2" in notice and "Kermany" in notice
    # the ImageNet weights the package ships (the adult caution's trunk) are attributed, at the paths they live at
    assert "pneumonia/screening/lite0_trunk_imagenet.npz" in notice and "ML Illustrated" in notice
    for path in re.findall(r"\b(?:pneumonia|tools)/[\w/]+\.(?:py|npz)", notice):
        assert (REPO / path).is_file(), path


def _build_wheel(tmp_path: Path) -> Path:
    try:
        from importlib.metadata import PackageNotFoundError, version

        setuptools_version = Version(version("setuptools"))
    except PackageNotFoundError:
        pytest.skip("setuptools is not installed here, and building without it would need the network")
    needed = Version(re.search(r"setuptools>=([\d.]+)", " ".join(PYPROJECT["build-system"]["requires"]))[1])
    if setuptools_version < needed:
        pytest.skip(
            f"building offline needs setuptools>={needed} (pyproject's build-system); this environment has "
            f"{setuptools_version}: `pip install 'setuptools>={needed}'` to run this test"
        )
    source = tmp_path / "src"  # build from a copy: setuptools leaves build/ and *.egg-info/ in the source tree
    shutil.copytree(
        REPO,
        source,
        ignore=shutil.ignore_patterns(
            ".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache", "chest_xray", "runs"
        ),
    )
    out = tmp_path / "wheel"
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", out, source],
        check=False,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    (wheel,) = out.glob("*.whl")
    return wheel


def test_wheel_holds_the_package_the_command_and_the_licences_only(tmp_path):
    wheel = _build_wheel(tmp_path)
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        dist_info = next(name.split("/")[0] for name in names if name.endswith(".dist-info/METADATA"))
        entry_points = archive.read(f"{dist_info}/entry_points.txt").decode()
        metadata = archive.read(f"{dist_info}/METADATA").decode()
    assert {"pneumonia/__init__.py", "pneumonia/__main__.py", "pneumonia/cli.py", "pneumonia/tensorflow_logs.py",
            "pneumonia/archive/__init__.py", "pneumonia/archive/local.py"} <= set(names)  # subpackages too
    assert "pneumonia/screening/lite0_trunk_imagenet.npz" in names  # the adult caution's weights: no download
    assert {f"{dist_info}/licenses/LICENSE", f"{dist_info}/licenses/NOTICE"} <= set(names)
    assert not [name for name in names if name.split("/")[0] in {"tests", "benchmarks", "models", "assets", "app.py"}]
    assert re.search(r"^\[console_scripts\]\s*^pneumonia = pneumonia\.cli:main$", entry_points, re.MULTILINE)
    assert f"\nVersion: {pneumonia.__version__}\n" in metadata
    assert "\nLicense-Expression: Apache-2.0\n" in metadata
    required = re.findall(r"^Requires-Dist: (.+)$", metadata, re.MULTILINE)
    assert _normalised(r for r in required if "extra ==" not in r) == _requirements_txt()
    assert any(r.startswith("ray[data]") and 'extra == "ray"' in r for r in required)  # the optional Ray engine


# --- a quiet command line -------------------------------------------------------------------------------------


def test_importing_the_cli_does_not_load_tensorflow():
    """The log settings only work if they are made before TensorFlow is first imported."""
    code = "import sys, pneumonia.cli; print(sorted(m for m in ('tensorflow', 'keras') if m in sys.modules))"
    result = subprocess.run(
        [sys.executable, "-c", code], check=False, cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_a_failing_predict_prints_one_error_line_and_no_noise(tmp_path):
    result = _run_cli("predict", str(tmp_path / "missing.png"))
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert str(tmp_path / "missing.png") in lines[0]


def test_predict_on_a_real_x_ray_keeps_tensorflow_logs_off_stderr():
    result = _run_cli("predict", str(SAMPLE))
    assert result.returncode == 0, result.stderr
    assert SAMPLE.name in result.stdout
    assert result.stderr.strip(), "the summary line is missing"
    assert _noise(result.stderr) == [], result.stderr


_LOAD_AND_RUN = """
import sys
from pneumonia.cli import _quiet_logs
_quiet_logs(sys.argv[1] == "verbose")
import numpy as np
import tensorflow as tf
from pneumonia.screening.predictor import load_predictor
predictor = load_predictor()
predictor.model.predict(np.zeros((1, 128, 128, 1), "float32"), verbose=0)
print(type(tf.__spec__.loader).__name__, type(tf.__loader__).__name__)
import os
print(os.environ.get("TF_CPP_MIN_LOG_LEVEL"))
print("error: our own line", file=sys.stderr)
"""


@pytest.mark.parametrize("verbose", [False, True])
def test_quiet_logs_hides_tensorflow_import_and_runtime_lines_unless_verbose(verbose):
    result = _run_python("-c", _LOAD_AND_RUN, "verbose" if verbose else "quiet")
    assert result.returncode == 0, result.stderr
    loaders, level = result.stdout.splitlines()[-2:]
    assert loaders == "SourceFileLoader SourceFileLoader"  # tensorflow keeps its real loader
    assert "error: our own line" in result.stderr.splitlines()
    if verbose:
        assert level == "0"  # TensorFlow may log everything; whether it does depends on the machine
    else:
        assert level == "3"
        assert _noise(result.stderr) == [], result.stderr


def test_a_log_level_the_user_chose_is_kept():
    code = f"import os; from pneumonia.cli import _quiet_logs; _quiet_logs(False); print(os.environ[{LEVEL!r}])"
    env = {**os.environ, LEVEL: "1"}
    result = subprocess.run(
        [sys.executable, "-c", code], check=False, cwd=REPO, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.stdout.strip() == "1", result.stderr


def test_verbose_predict_still_works():
    result = _run_cli("--verbose", "predict", str(SAMPLE))
    assert result.returncode == 0, result.stderr
    assert SAMPLE.name in result.stdout
