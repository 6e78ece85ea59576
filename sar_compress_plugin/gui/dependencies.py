"""The dependency dialog (after the Deepness plugin's): what is missing, one click to install it, pip's output.

pip runs in a QProcess, so QGIS stays responsive and its output streams into the dialog; nothing touches the
network until the user clicks Install. After pip ends, the plugin's package folder is put on sys.path and the
check runs again, so the plugin works without restarting QGIS.
"""

from __future__ import annotations

import html

from qgis.PyQt.QtCore import QProcess, Qt, pyqtSignal
from qgis.PyQt.QtGui import QFont
from qgis.PyQt.QtWidgets import QDialog, QDialogButtonBox, QLabel, QPlainTextEdit, QPushButton, QVBoxLayout

from ..utils import deps


class DependencyDialog(QDialog):
    #: Emitted when pip has ended: True when nothing is missing any more.
    install_finished = pyqtSignal(bool)

    def __init__(self, parent=None, gpu: bool | None = None):
        super().__init__(parent)
        self.setWindowTitle("SAR Compress — Python dependencies")
        self.resize(720, 480)
        self.gpu = deps.has_nvidia_gpu() if gpu is None else gpu
        self.python = deps.python_executable()
        self.target = deps.plugin_site_dir()
        self.missing = deps.check_dependencies()
        self.process: QProcess | None = None

        self.status = QLabel()
        self.status.setWordWrap(True)
        self.plan = QLabel()
        self.plan.setWordWrap(True)
        self.plan.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.output = QPlainTextEdit()
        self.output.setReadOnly(True)
        self.output.setFont(QFont("monospace"))
        self.output.setPlaceholderText("pip's output appears here.")
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        self.install_button = QPushButton("Install")
        self.buttons.addButton(self.install_button, QDialogButtonBox.ButtonRole.ActionRole)
        self.install_button.clicked.connect(self.install)
        self.buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(self.status)
        layout.addWidget(self.plan)
        layout.addWidget(self.output, 1)
        layout.addWidget(self.buttons)
        self._refresh()

    def packages(self) -> list[str]:
        return deps.install_packages(self.missing, self.gpu)

    def command(self) -> list[str]:
        """The full command the Install button runs (interpreter first)."""
        return [self.python or "", *deps.pip_arguments(self.packages(), self.target)]

    def _refresh(self) -> None:
        if not self.missing:
            self.status.setText("All Python packages SAR Compress needs are available.")
            self.plan.setText("")
            self.install_button.setEnabled(False)
            return
        rows = "".join(f"<li><b>{html.escape(m.module)}</b>: {html.escape(m.reason)}</li>" for m in self.missing)
        self.status.setText(f"SAR Compress needs Python packages that QGIS's Python cannot import:<ul>{rows}</ul>")
        packages = self.packages()
        runtime = ("an NVIDIA GPU was found: onnxruntime-gpu" if self.gpu
                   else "no NVIDIA GPU was found: onnxruntime for CPU")
        if self.python is None:
            self.plan.setText("The Python interpreter QGIS runs could not be found, so the packages cannot be "
                              "installed from here. Install them into QGIS's Python: " + " ".join(packages))
            self.install_button.setEnabled(False)
        elif not packages:
            self.plan.setText("QGIS's own numpy is unusable and a separate package folder cannot replace it: "
                              "install numpy<2 into QGIS's Python with your system's package manager.")
            self.install_button.setEnabled(False)
        else:
            self.plan.setText(
                f"Install downloads {', '.join(packages)} ({runtime}) with {html.escape(self.python)} into "
                f"{html.escape(str(self.target))}, a folder of this QGIS profile. No restart is needed.")
            self.install_button.setEnabled(self.process is None)

    def install(self) -> None:
        """Start pip (asynchronously); `finished` re-checks."""
        if self.python is None or not self.missing or self.process is not None:
            return
        self.target.mkdir(parents=True, exist_ok=True)
        cmd = self.command()
        self.output.appendPlainText("$ " + " ".join(cmd))
        self.process = QProcess(self)
        self.process.setProcessChannelMode(QProcess.ProcessChannelMode.MergedChannels)
        self.process.readyReadStandardOutput.connect(self._read_output)
        self.process.finished.connect(self._finished)
        self.process.errorOccurred.connect(self._error)
        self.install_button.setEnabled(False)
        self.status.setText("Installing…")
        self.process.start(cmd[0], cmd[1:])

    def is_running(self) -> bool:
        return self.process is not None

    def _read_output(self) -> None:
        if self.process is not None:
            text = bytes(self.process.readAllStandardOutput()).decode("utf-8", "replace")
            self.output.appendPlainText(text.rstrip("\n"))

    def _error(self, error) -> None:
        if error == QProcess.ProcessError.FailedToStart:
            self.output.appendPlainText(f"Could not start {self.python}: {self.process.errorString()}")
            self.process = None
            self._refresh()

    def _finished(self, code: int, _status) -> None:
        self._read_output()
        self.process = None
        deps.add_plugin_site_dir()
        self.missing = deps.check_dependencies()
        self._refresh()
        if self.missing:
            names = ", ".join(m.module for m in self.missing)
            self.status.setText(f"pip ended with exit code {code} and {names} still cannot be imported: "
                                "see pip's output below.")
        else:
            self.status.setText("Installed: all Python packages SAR Compress needs are available now "
                                "(no restart needed).")
        self.install_finished.emit(not self.missing)

    def reject(self) -> None:
        """Closing while pip runs would leave a half-written package folder: the dialog stays until pip ends."""
        if self.process is not None:
            self.status.setText("pip is still running; the dialog closes once it has finished.")
            return
        super().reject()
