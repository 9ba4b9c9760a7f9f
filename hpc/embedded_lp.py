"""``EmbeddedLaunchPad``: a FireWorks LaunchPad whose database is the embedded store.

FireWorks' own code (rocket launcher, queue launcher, ``lpad`` subcommands) works on it
unchanged: it has the attributes ``LaunchPad.__init__`` sets, with a
:class:`~perovflow.hpc.embedded.SyncedClient` where FireWorks would build a pymongo
client. ``to_dict``/``from_dict`` round-trip it (folder and database name).
"""

from __future__ import annotations

from typing import Any

from fireworks import LaunchPad
from fireworks.utilities.fw_utilities import get_fw_logger

from perovflow.hpc.embedded import embedded_client

FW_LOGLEVEL = "ERROR"


class EmbeddedLaunchPad(LaunchPad):
    """A FireWorks LaunchPad on the embedded store in ``folder`` (no MongoDB server).

    ``LaunchPad.__init__`` would build a pymongo client, so it is not called; the same
    attributes are set here. GridFS fallback is off (the embedded store has no GridFS).
    """

    def __init__(
        self, folder: str, name: str = "fireworks", strm_lvl: str = FW_LOGLEVEL, **kw: Any
    ) -> None:
        self.embedded_folder = str(folder)
        self.host, self.port, self.name = "embedded", 0, name
        self.username = self.password = None
        self.authsource, self.uri_mode = name, False
        self.mongoclient_kwargs: dict[str, Any] = {}
        self.logdir, self.strm_lvl = kw.get("logdir"), strm_lvl
        self.m_logger = get_fw_logger("launchpad", l_dir=self.logdir, stream_level=strm_lvl)
        self.user_indices = kw.get("user_indices") or []
        self.wf_user_indices = kw.get("wf_user_indices") or []
        self.connection = embedded_client(folder)
        self.db = self.connection[name]
        self.fireworks, self.launches = self.db.fireworks, self.db.launches
        self.offline_runs, self.workflows = self.db.offline_runs, self.db.workflows
        self.fw_id_assigner = self.db.fw_id_assigner
        self.gridfs_fallback = None
        self.backup_launch_data: dict = {}
        self.backup_fw_data: dict = {}

    def to_dict(self) -> dict[str, Any]:
        """Folder, database name and log level: all that is needed to reconnect."""
        return {"folder": self.embedded_folder, "name": self.name, "strm_lvl": self.strm_lvl}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EmbeddedLaunchPad:
        """Inverse of :meth:`to_dict`."""
        return cls(d["folder"], d.get("name", "fireworks"), d.get("strm_lvl") or FW_LOGLEVEL)
