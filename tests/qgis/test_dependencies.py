"""The dependency dialog as a user meets it: what is missing, one click installs it, no restart.

The installer really runs pip (in a QProcess, with the interpreter the dialog found) against a local wheel
folder built here (PIP_NO_INDEX + PIP_FIND_LINKS, so no network). What is not real: the list of required
packages is swapped for one tiny test package (monkeypatched `deps.REQUIREMENTS`), because installing the real
onnxruntime needs the network; and `sys.executable` is set to a qgis binary path in one test, as inside QGIS.
"""

from __future__ import annotations

import base64
import hashlib
import importlib
import sys
import zipfile
from pathlib import Path

import pytest
from qgis.PyQt.QtCore import Qt

from sar_compress_plugin.utils import deps

TEST_MODULE = "sarc_testdep"


def _build_wheel(folder: Path) -> Path:
    """A valid pure-Python wheel, written by hand (no build backend, no network)."""
    name = f"{TEST_MODULE}-1.0-py3-none-any.whl"
    files = {
        f"{TEST_MODULE}/__init__.py": "VALUE = 42\n",
        f"{TEST_MODULE}-1.0.dist-info/METADATA": "Metadata-Version: 2.1\nName: sarc-testdep\nVersion: 1.0\n",
        f"{TEST_MODULE}-1.0.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: hand\nRoot-Is-Purelib: true\n"
                                              "Tag: py3-none-any\n",
    }
    record = []
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(text.encode())}")
    record.append(f"{TEST_MODULE}-1.0.dist-info/RECORD,,")
    files[f"{TEST_MODULE}-1.0.dist-info/RECORD"] = "\n".join(record) + "\n"
    folder.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(folder / name, "w") as zf:
        for path, text in files.items():
            zf.writestr(path, text)
    return folder / name


@pytest.fixture
def fake_requirement(monkeypatch, tmp_path, qgis_app):
    """Only the test package is required; the plugin's package folder starts empty; pip sees only local wheels."""
    monkeypatch.setattr(deps, "REQUIREMENTS", [(TEST_MODULE, "sarc-testdep==1.0")])
    wheels = tmp_path / "wheels"
    _build_wheel(wheels)
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(wheels))
    site = deps.plugin_site_dir()
    yield site
    sys.modules.pop(TEST_MODULE, None)
    if str(site) in sys.path:
        sys.path.remove(str(site))
    import shutil

    shutil.rmtree(site, ignore_errors=True)


def test_install_button_installs_into_plugin_folder_and_rechecks_without_restart(qtbot, fake_requirement):
    from sar_compress_plugin.gui.dependencies import DependencyDialog

    with pytest.raises(ImportError):
        importlib.import_module(TEST_MODULE)
    dialog = DependencyDialog(gpu=False)
    qtbot.addWidget(dialog)
    dialog.show()
    assert TEST_MODULE in dialog.status.text()
    assert dialog.install_button.isEnabled()
    cmd = dialog.command()
    assert Path(cmd[0]).name.startswith("python") and Path(cmd[0]).is_file()
    assert cmd[1:5] == ["-m", "pip", "install", "--target"] and cmd[5] == str(fake_requirement)
    assert "sarc-testdep==1.0" in cmd and not any("onnxruntime" in c for c in cmd)
    assert str(fake_requirement) in dialog.plan.text()  # the user sees where it goes

    with qtbot.waitSignal(dialog.install_finished, timeout=120_000) as blocker:
        qtbot.mouseClick(dialog.install_button, Qt.MouseButton.LeftButton)
    assert blocker.args == [True]
    assert "Successfully installed sarc-testdep-1.0" in dialog.output.toPlainText()
    assert "no restart needed" in dialog.status.text()
    assert not dialog.install_button.isEnabled()
    assert (fake_requirement / TEST_MODULE / "__init__.py").is_file()
    assert importlib.import_module(TEST_MODULE).VALUE == 42  # importable in this very process
    assert sys.path[-1] == str(fake_requirement)  # after QGIS's own packages: its numpy/GDAL win
    assert deps.check_dependencies() == []


def test_failed_install_shows_pip_output_and_keeps_what_is_missing(qtbot, fake_requirement, monkeypatch, tmp_path):
    from sar_compress_plugin.gui.dependencies import DependencyDialog

    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path / "empty"))  # no wheel there
    dialog = DependencyDialog(gpu=False)
    qtbot.addWidget(dialog)
    with qtbot.waitSignal(dialog.install_finished, timeout=120_000) as blocker:
        qtbot.mouseClick(dialog.install_button, Qt.MouseButton.LeftButton)
    assert blocker.args == [False]
    assert "No matching distribution" in dialog.output.toPlainText()
    assert "still cannot be imported" in dialog.status.text() and TEST_MODULE in dialog.status.text()
    assert dialog.install_button.isEnabled()  # the user can try again


def test_runtime_choice_follows_the_gpu_and_never_both():
    ort = [deps.MissingDependency("onnxruntime", "onnxruntime", "ImportError")]
    assert deps.install_packages(ort, gpu=True) == [f"onnxruntime-gpu=={deps.ONNXRUNTIME_VERSION}"]
    assert deps.install_packages(ort, gpu=False) == [f"onnxruntime=={deps.ONNXRUNTIME_VERSION}"]


def test_real_python_found_when_sys_executable_is_the_qgis_binary(monkeypatch):
    """Inside QGIS on Linux sys.executable is /usr/bin/qgis; pip must run with the interpreter in sys.prefix."""
    monkeypatch.setattr(sys, "executable", "/usr/bin/qgis")
    python = deps.python_executable()
    assert python is not None and Path(python).name.startswith("python") and Path(python).is_file()
    assert "pyenv" not in python and Path(python).parent.parent in {Path(sys.prefix), Path(sys.base_prefix),
                                                                   Path(sys.exec_prefix)} | {
        Path(getattr(sys, "_base_executable", "/")).parent.parent}


def test_processing_hint_is_one_line_with_a_command_that_names_the_target(fake_requirement):
    hint = deps.install_hint(deps.check_dependencies())
    assert "\n" not in hint and TEST_MODULE in hint
    assert "--target" in hint and str(fake_requirement) in hint and "Python dependencies…" in hint
    assert not hint.startswith("python -m pip")
