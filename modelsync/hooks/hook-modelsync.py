"""PyInstaller hook for modelsync: bundle the project's models.lock.

The frozen app reads ``modelsync_bundle/models.lock`` to know what each model
is and where to fetch it on first use. The project is MODELSYNC_PROJECT, else
the nearest models.lock above the folder PyInstaller runs in; with none, the
build goes on with a warning (a spec's ``modelsync.pyinstaller.datas(project=...)``
may still add it). Model files are bundled only when the spec asks
(``datas(bundle=...)``), and other packages' modules are left to the spec's
``excludes()``: a hook must not decide them.

No hidden imports are needed: PyInstaller follows modelsync's imports inside
functions, so the sync engine that ``ensure()`` runs in the frozen app is
collected (tests/test_pyinstaller.py builds an app that downloads with it).
"""

from PyInstaller.utils.hooks import logger

from modelsync import pyinstaller
from modelsync.errors import ModelsyncError

# Only `modelsync lock` asks the Hub; a running app downloads with modelsync's own
# engine, so huggingface_hub (and httpx, ...) need not follow modelsync into it.
excludedimports = ["huggingface_hub"]

try:
    datas = pyinstaller.datas()
except ModelsyncError as error:
    datas = []
    logger.warning("modelsync: no models.lock bundled: %s", str(error).replace("\n", " "))
