"""The local services e2ad starts itself: the embedded Kafka broker and a Samba AD DC on loopback.

Used by `e2ad services up|down|status`, by `e2ad up` and by the test session. Both run as
children of nobody (own sessions), are found again by the pid files under the state directory,
and are stopped by pid: running `up` twice is safe.

The DC is provisioned once into a template directory (3-7 s); each fresh DC is a copy of the
stopped template (0.03 s), so `services reset` gives a clean directory in about a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.resources
import json
import logging
import os
import signal
import socket
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from runtime.config import default_state_dir
from runtime.kafka import wait_until_ready
from schemas.config import AdSettings, KafkaSettings

log = logging.getLogger(__name__)

DC_SCRIPT = Path(__file__).with_name("samba_dc.sh")
DC_REALM = "E2AD.TEST"
DC_BASE_DN = "DC=e2ad,DC=test"
DC_ADMIN_DN = f"CN=Administrator,CN=Users,{DC_BASE_DN}"
DC_ADMIN_PASSWORD = "Passw0rd!Str0ng#2024"
DC_TLS_SERVER_NAME = "DC1.e2ad.test"  # the name in Samba's self-signed LDAPS certificate
# With 1,000,000 records (a 1.2 GB snapshot) the broker took 45 s to exit after SIGTERM
# (scripts/bench_broker_soak.py), and SIGKILL loses what it acknowledged in its last half second:
# wait well past that before killing it. Retention keeps e2ad's own state far smaller.
BROKER_STOP_TIMEOUT_SECONDS = 120.0
KILL_TIMEOUT_SECONDS = 5.0


class ServiceError(RuntimeError):
    pass


@dataclass(frozen=True)
class Endpoints:
    """How to reach the local services; e2ad's settings are derived from this."""

    kafka_bootstrap: str
    ad_url: str
    ad_bind_dn: str
    ad_bind_password: str
    ad_base_dn: str
    ad_ca_file: str
    ad_tls_server_name: str
    ad_krb5_config: str  # KRB5_CONFIG for Kerberos binds to the local DC (ad.auth kerberos)

    def ad_settings(self) -> AdSettings:
        """Settings that reach the local DC as its administrator, validating its certificate."""
        return AdSettings(
            url=self.ad_url,
            bind_dn=self.ad_bind_dn,
            bind_password=self.ad_bind_password,
            base_dn=self.ad_base_dn,
            ca_file=Path(self.ad_ca_file),
            tls_server_name=self.ad_tls_server_name,
        )

    def as_environment(self) -> dict[str, str]:
        return {
            "E2AD_KAFKA__BOOTSTRAP_SERVERS": self.kafka_bootstrap,
            "E2AD_AD__URL": self.ad_url,
            "E2AD_AD__BIND_DN": self.ad_bind_dn,
            "E2AD_AD__BIND_PASSWORD": self.ad_bind_password,
            "E2AD_AD__BASE_DN": self.ad_base_dn,
            "E2AD_AD__CA_FILE": self.ad_ca_file,
            "E2AD_AD__TLS_SERVER_NAME": self.ad_tls_server_name,
        }


class LocalServices:
    def __init__(self, state_dir: Path | None = None) -> None:
        self.state_dir = (state_dir or default_state_dir()).resolve()
        self.dc_template = self.state_dir / "dc-template"
        self.dc_dir = self.state_dir / "dc"
        self.kafka_dir = self.state_dir / "kafka"
        self.kafka_state = self.state_dir / "kafka.json"

    # -- both ----------------------------------------------------------------------------------
    async def up(self) -> Endpoints:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        bootstrap = await self.start_kafka()
        await asyncio.to_thread(self.start_dc)
        return self.endpoints(bootstrap)

    def down(self) -> None:
        self.stop_kafka()
        self.stop_dc()

    def reset(self) -> None:
        """Stop both and throw their data away: the next `up` starts empty (the DC from its template)."""
        self.stop_kafka()
        subprocess.run(["rm", "-rf", "--", str(self.kafka_dir)], check=True)
        self.reset_dc()

    def status(self) -> dict[str, str]:
        kafka = self._kafka_record()
        return {
            "kafka": f"running on {kafka['bootstrap']} (pid {kafka['pid']})" if kafka else "stopped",
            "ad": "running on ldaps://127.0.0.1:636" if self.dc_running() else "stopped",
            "state_dir": str(self.state_dir),
        }

    def endpoints(self, bootstrap: str) -> Endpoints:
        return Endpoints(
            kafka_bootstrap=bootstrap,
            ad_url="ldaps://127.0.0.1:636",
            ad_bind_dn=DC_ADMIN_DN,
            ad_bind_password=DC_ADMIN_PASSWORD,
            ad_base_dn=DC_BASE_DN,
            ad_ca_file=str(self.dc_dir / "private" / "tls" / "ca.pem"),
            ad_tls_server_name=DC_TLS_SERVER_NAME,
            ad_krb5_config=str(self.dc_dir / "etc" / "krb5-client.conf"),
        )

    # -- Kafka ---------------------------------------------------------------------------------
    async def start_kafka(self) -> str:
        record = self._kafka_record()
        if record is None:
            self.kafka_dir.mkdir(parents=True, exist_ok=True)
            port = free_port()
            binary = importlib.resources.files("noida_db") / "noida-db"
            if not Path(str(binary)).exists():
                raise ServiceError("the embedded broker is not installed: pip install 'e2ad[embedded]'")
            logfile = (self.state_dir / "kafka.log").open("ab")
            # The binary itself, not the noida-db wrapper script: SIGTERM to the wrapper leaves the
            # broker running (kafka-broker.md §7).
            process = subprocess.Popen(
                [str(binary), "start", "--only", "kafka", "--host", "127.0.0.1", "--kafka-port", str(port),
                 "--data-dir", str(self.kafka_dir)],
                stdout=logfile, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            )  # fmt: skip
            record = {"pid": process.pid, "bootstrap": f"127.0.0.1:{port}"}
            self.kafka_state.write_text(json.dumps(record))
            log.info("started the embedded Kafka broker on %s (pid %s)", record["bootstrap"], process.pid)
        try:
            await wait_until_ready(KafkaSettings(bootstrap_servers=str(record["bootstrap"])), timeout=60)
        except Exception as exc:
            raise ServiceError(f"the Kafka broker on {record['bootstrap']} does not answer: {exc}") from exc
        return str(record["bootstrap"])

    def stop_kafka(self) -> None:
        """Stop the broker and return once it has exited. Stop whatever produces to it first.

        SIGTERM lets noida write its final snapshot, so acknowledged records survive the restart;
        but while it shuts down it still acknowledges writes it then drops (kafka-broker.md,
        "Measured on 2026-12-01"), so no producer may be connected by then (`e2ad up` stops its
        stages first).
        """
        record = self._kafka_record()
        if record is not None:
            pid = int(record["pid"])
            if _terminate(pid, timeout=BROKER_STOP_TIMEOUT_SECONDS):
                log.info("stopped the Kafka broker (pid %s)", pid)
            else:
                log.warning(
                    "the Kafka broker (pid %s) did not exit within %.0f s of SIGTERM and was killed: "
                    "records acknowledged in its last half second may be lost",
                    pid,
                    BROKER_STOP_TIMEOUT_SECONDS,
                )
        self.kafka_state.unlink(missing_ok=True)

    def _kafka_record(self) -> dict[str, object] | None:
        try:
            record = json.loads(self.kafka_state.read_text())
        except (OSError, ValueError):
            return None
        return record if _alive(int(record["pid"]), "noida") else None

    # -- Samba AD DC ---------------------------------------------------------------------------
    def start_dc(self) -> None:
        if os.geteuid() != 0:
            raise ServiceError("the Samba AD DC must be started as root")
        if not (self.dc_dir / "private" / "sam.ldb").exists():
            self._ensure_template()
            self._dc_script("clone", self.dc_template, self.dc_dir)
        self._dc_script("start", self.dc_dir)

    def stop_dc(self) -> None:
        if self.dc_dir.exists():
            self._dc_script("stop", self.dc_dir)

    def reset_dc(self) -> None:
        """Throw the DC's data away: the next start_dc begins from the template."""
        self.stop_dc()
        subprocess.run(["rm", "-rf", "--", str(self.dc_dir)], check=True)

    def dc_running(self) -> bool:
        return self.dc_dir.exists() and self._dc_script("status", self.dc_dir, check=False) == 0

    def _ensure_template(self) -> None:
        if (self.dc_template / "private" / "tls" / "ca.pem").exists():
            return
        subprocess.run(["rm", "-rf", "--", str(self.dc_template)], check=True)
        self._dc_script("provision", self.dc_template)
        # One start generates the TLS keys (1-3 s) once, instead of in every copy.
        self._dc_script("start", self.dc_template)
        self._dc_script("stop", self.dc_template)

    def _dc_script(self, command: str, *dirs: Path, check: bool = True) -> int:
        started = time.monotonic()
        result = subprocess.run(["bash", str(DC_SCRIPT), command, *map(str, dirs)], stdin=subprocess.DEVNULL)
        if check and result.returncode != 0:
            raise ServiceError(f"samba_dc.sh {command} failed (exit {result.returncode}); logs in {dirs[-1]}/log")
        log.debug("samba_dc.sh %s took %.2f s", command, time.monotonic() - started)
        return result.returncode


def state_summary(endpoints: Endpoints) -> str:
    return json.dumps(asdict(endpoints), indent=2)


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _alive(pid: int, name: str) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return name.encode() in cmdline


def _terminate(pid: int, *, timeout: float) -> bool:
    """SIGTERM, and wait until the process has exited; SIGKILL after `timeout`. True: it exited on its own."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    if _exited_within(pid, timeout):
        return True
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    # A killed process still takes a moment to go; returning earlier would let a restart meet it.
    if not _exited_within(pid, KILL_TIMEOUT_SECONDS):
        raise ServiceError(f"process {pid} does not exit even after SIGKILL")
    return False


def _exited_within(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if not Path(f"/proc/{pid}").exists() or _zombie(pid):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except OSError:
        return True
