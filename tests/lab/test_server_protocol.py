"""The lab's protocol server, driven by the real, unpatched pypsrp client."""

from __future__ import annotations

import datetime
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from pypsrp.complex_objects import GenericComplexObject
from pypsrp.exceptions import AuthenticationError, WinRMTransportError, WSManFaultError
from pypsrp.powershell import PowerShell, RunspacePool
from pypsrp.wsman import WSMan

from orchestrator.lab.common import Hashtable, LabFaults, ScriptHandler, ScriptResult, WinRMConfig
from orchestrator.lab.server import INJECTED_FAULT_CODE, LabServer
from tests.shells import let_idle_shells_expire

pytestmark = pytest.mark.lab

USER = "labadmin"
PASSWORD = "Lab-P@ssw0rd"

MakeServer = Callable[..., LabServer]


@pytest.fixture
def make_server() -> Iterator[MakeServer]:
    """Starts LabServers on 127.0.0.x with a free port; every one is stopped at teardown."""
    servers: list[LabServer] = []

    def make(
        handler: ScriptHandler,
        address: str = "127.0.0.2",
        port: int = 0,
        **kwargs: Any,
    ) -> LabServer:
        kwargs.setdefault("username", USER)
        kwargs.setdefault("password", PASSWORD)
        server = LabServer(address, port, handler, **kwargs)
        servers.append(server)
        server.start()
        return server

    try:
        yield make
    finally:
        for server in servers:
            server.stop()


def client(
    server: LabServer,
    *,
    auth: str = "negotiate",
    username: str = USER,
    password: str = PASSWORD,
    encryption: str = "auto",
    ssl: bool = False,
) -> WSMan:
    return WSMan(
        server.address,
        port=server.port,
        username=username,
        password=password,
        ssl=ssl,
        cert_validation=False,
        auth=auth,
        encryption=encryption,
        operation_timeout=5,
        read_timeout=10,
        connection_timeout=5,
    )


def run(pool: RunspacePool, script: str, **parameters: Any) -> PowerShell:
    ps = PowerShell(pool)
    ps.add_script(script)
    if parameters:
        ps.add_parameters(parameters)
    ps.invoke()
    return ps


def errors_of(ps: PowerShell) -> list[str]:
    return [str(record) for record in ps.streams.error]


class Recorder:
    """A ScriptHandler that remembers its calls and answers with a fixed function."""

    def __init__(self, answer: Callable[[str, dict[str, Any]], ScriptResult]) -> None:
        self.answer = answer
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self._lock = threading.Lock()

    def __call__(self, script: str, parameters: dict[str, Any]) -> ScriptResult:
        with self._lock:
            self.calls.append((script, parameters))
        return self.answer(script, parameters)


def echo(script: str, parameters: dict[str, Any]) -> ScriptResult:
    return ScriptResult(output=[{"script": script, **parameters}])


def test_negotiate_with_message_encryption_runs_pipelines(make_server: MakeServer) -> None:
    recorder = Recorder(echo)
    server = make_server(recorder)
    wsman = client(server)
    script = "param($Name, $Count, $Enabled, $Tags, $Options)\n'step: echo'"
    with RunspacePool(wsman) as pool:
        assert wsman.transport.wrap_required and wsman.transport.encryption is not None
        for index in range(3):
            ps = run(
                pool,
                script,
                Name=f"web{index:02d}",
                Count=index,
                Enabled=index % 2 == 0,
                Tags=["a", "b", index],
                Options={"mode": "dsr", "weak": {"send": True, "receive": False}, "ports": [80, 443]},
                Missing=None,
            )
            assert not ps.had_errors and errors_of(ps) == []
            assert len(ps.output) == 1
            obj = ps.output[0]
            assert isinstance(obj, GenericComplexObject)
            props = obj.extended_properties
            assert props["script"] == script
            assert props["Name"] == f"web{index:02d}"
            assert props["Count"] == index
            assert props["Enabled"] is (index % 2 == 0)
            assert props["Tags"] == ["a", "b", index]
            assert props["Missing"] is None
            options = props["Options"]
            assert isinstance(options, GenericComplexObject)
            assert options.extended_properties["mode"] == "dsr"
            assert options.extended_properties["ports"] == [80, 443]
            weak = options.extended_properties["weak"]
            assert isinstance(weak, GenericComplexObject)
            assert weak.extended_properties == {"send": True, "receive": False}

    assert len(recorder.calls) == 3
    seen_script, seen = recorder.calls[2]
    assert seen_script == script
    assert seen == {
        "Name": "web02",
        "Count": 2,
        "Enabled": True,
        "Tags": ["a", "b", 2],
        "Options": {"mode": "dsr", "weak": {"send": True, "receive": False}, "ports": [80, 443]},
        "Missing": None,
    }
    # The handler sees plain Python values, not psrpcore's PS* subclasses.
    assert type(seen["Name"]) is str and type(seen["Count"]) is int and type(seen["Enabled"]) is bool
    assert type(seen["Tags"]) is list and type(seen["Options"]) is dict
    assert type(seen["Options"]["weak"]) is dict and type(seen["Tags"][0]) is str
    assert server.counters.wsman["Create"] == 1 and server.counters.wsman["Delete"] == 1


def test_hashtable_arrives_as_dict_and_scalars_as_python_values(make_server: MakeServer) -> None:
    def answer(script: str, parameters: dict[str, Any]) -> ScriptResult:
        table = Hashtable(Name="Ethernet0", Index=12, Nested=Hashtable(Enabled=True), Addresses=["10.0.0.5"])
        return ScriptResult(output=[table, "text", 42, False, [1, "two"]])

    server = make_server(answer)
    with RunspacePool(client(server)) as pool:
        ps = run(pool, "Get-NetAdapter")
    table, text, number, flag, items = ps.output
    assert type(table) is dict
    assert table == {"Name": "Ethernet0", "Index": 12, "Nested": {"Enabled": True}, "Addresses": ["10.0.0.5"]}
    assert (text, number, flag, items) == ("text", 42, False, [1, "two"])


def test_error_records_and_failed_pipelines(make_server: MakeServer) -> None:
    def answer(script: str, parameters: dict[str, Any]) -> ScriptResult:
        if script == "warn":
            return ScriptResult(output=[{"ok": True}], errors=["first problem", "second problem"])
        if script == "throw":
            return ScriptResult(output=[{"partial": 1}], failed="The step could not finish")
        if script == "crash":
            raise RuntimeError("handler blew up")
        return ScriptResult(output=["fine"])

    server = make_server(answer)
    with RunspacePool(client(server)) as pool:
        ps = run(pool, "warn")
        assert ps.had_errors is False
        assert errors_of(ps) == ["first problem", "second problem"]
        assert ps.output[0].extended_properties == {"ok": True}

        ps = run(pool, "throw")
        assert ps.had_errors is True
        assert errors_of(ps) == ["The step could not finish"]
        assert ps.output[0].extended_properties == {"partial": 1}

        ps = run(pool, "crash")
        assert ps.had_errors is True
        assert any("handler blew up" in message for message in errors_of(ps))

        # The pool and the server carry on after a failure.
        ps = run(pool, "next")
        assert ps.had_errors is False and ps.output == ["fine"]


def test_wrong_password_is_an_authentication_error(make_server: MakeServer) -> None:
    # Basic in clear only where the host allows both (Windows' defaults refuse them).
    server = make_server(echo, winrm=WinRMConfig(basic=True, allow_unencrypted=True))
    with pytest.raises(AuthenticationError):
        RunspacePool(client(server, password="wrong")).open()
    assert server.counters.auth_failures == 1
    with pytest.raises(AuthenticationError):
        RunspacePool(client(server, username="someoneelse")).open()
    with pytest.raises(AuthenticationError):
        RunspacePool(client(server, auth="basic", encryption="never", password="wrong")).open()
    assert server.counters.auth_failures == 3
    assert sum(server.counters.wsman.values()) == 0

    # The right password still works, also with a domain-qualified name.
    with RunspacePool(client(server, username=f"WIN-LAB\\{USER}")) as pool:
        assert run(pool, "ok").output[0].extended_properties == {"script": "ok"}


def test_servers_with_the_same_user_but_different_passwords(make_server: MakeServer) -> None:
    first = make_server(echo, address="127.0.0.3", password="First-Secret1")
    second = make_server(echo, address="127.0.0.4", password="Second-Secret2")
    with RunspacePool(client(first, password="First-Secret1")) as pool:
        run(pool, "a")
    with RunspacePool(client(second, password="Second-Secret2")) as pool:
        run(pool, "b")
    with pytest.raises(AuthenticationError):
        RunspacePool(client(second, password="First-Secret1")).open()
    assert (first.counters.auth_failures, second.counters.auth_failures) == (0, 1)


def test_basic_auth_without_encryption(make_server: MakeServer) -> None:
    server = make_server(echo, address="127.0.0.5", winrm=WinRMConfig(basic=True, allow_unencrypted=True))
    wsman = client(server, auth="basic", encryption="never")
    with RunspacePool(wsman) as pool:
        ps = run(pool, "basic", Value=7)
    assert ps.output[0].extended_properties == {"script": "basic", "Value": 7}
    assert server.counters.auth_failures == 0

    negotiate_only = make_server(echo, address="127.0.0.6", auth=frozenset({"negotiate"}),
                                 winrm=WinRMConfig(basic=True, allow_unencrypted=True))
    with pytest.raises(AuthenticationError):
        RunspacePool(client(negotiate_only, auth="basic", encryption="never")).open()


def test_injected_wsman_fault_latency_and_dropped_connection(make_server: MakeServer) -> None:
    faults = LabFaults()
    server = make_server(echo, address="127.0.0.7", faults=faults)
    pool = RunspacePool(client(server))
    pool.open()

    faults.fault_on_request = sum(server.counters.wsman.values()) + 1
    with pytest.raises(WSManFaultError) as caught:
        run(pool, "faulted")
    assert caught.value.code == INJECTED_FAULT_CODE
    assert caught.value.reason and "resource is offline" in caught.value.reason
    assert caught.value.machine == "WIN-LAB"
    assert server.counters.wsman["Command"] == 1

    faults.latency = 0.02
    assert run(pool, "slow").output[0].extended_properties == {"script": "slow"}
    faults.latency = 0.0

    faults.drop_on_request = sum(server.counters.wsman.values()) + 1
    with pytest.raises(requests.exceptions.ConnectionError):
        run(pool, "dropped")

    # The host itself is fine: a fresh client gets through.
    faults.drop_on_request = None
    with RunspacePool(client(server)) as fresh:
        assert run(fresh, "again").output[0].extended_properties == {"script": "again"}
    let_idle_shells_expire(server, left=1)  # the dropped client's shell


def test_slow_step_large_output_and_stop(make_server: MakeServer) -> None:
    release = threading.Event()

    def answer(script: str, parameters: dict[str, Any]) -> ScriptResult:
        if script == "slow":
            time.sleep(0.35)
        if script == "hang":
            release.wait(10)
        if script == "large":
            return ScriptResult(output=["x" * 300_000, {"tail": list(range(2000))}])
        return ScriptResult(output=[script])

    server = make_server(answer, address="127.0.0.13", receive_wait=0.1)
    with RunspacePool(client(server)) as pool:
        before = server.counters.wsman["Receive"]
        assert run(pool, "slow").output == ["slow"]
        # The long poll answered OperationTimeout at least twice; pypsrp polled again each time.
        assert server.counters.wsman["Receive"] - before >= 3

        big, tail = run(pool, "large").output
        assert big == "x" * 300_000
        assert tail.extended_properties["tail"] == list(range(2000))

        ps = PowerShell(pool)
        ps.add_script("hang")
        ps.begin_invoke()
        ps.stop()
        assert server.counters.wsman["Signal"] == 1
        release.set()
        assert run(pool, "after stop").output == ["after stop"]


def test_counters_for_one_session(make_server: MakeServer) -> None:
    server = make_server(echo, address="127.0.0.8")
    with RunspacePool(client(server)) as pool:
        run(pool, "one")
    # The pool opens in two Receives, as on Windows; the pipeline takes one more.
    assert dict(server.counters.wsman) == {"Create": 1, "Receive": 3, "Command": 1, "Delete": 1}
    # Plus the empty authentication POST: unauthenticated, Negotiate, Authenticate.
    assert server.counters.http_requests == 6 + 3
    assert (server.counters.shells_created, server.counters.shells_deleted) == (1, 1)
    assert server.counters.auth_failures == 0


def test_ten_concurrent_clients_on_one_server(make_server: MakeServer) -> None:
    def answer(script: str, parameters: dict[str, Any]) -> ScriptResult:
        time.sleep(0.02)
        return ScriptResult(output=[{"worker": parameters["Worker"], "round": parameters["Round"]}])

    server = make_server(answer, address="127.0.0.9")
    results: dict[int, list[tuple[int, int]]] = {}
    failures: list[BaseException] = []

    def work(worker: int) -> None:
        try:
            with RunspacePool(client(server)) as pool:
                got = []
                for round_ in range(3):
                    ps = run(pool, "concurrent", Worker=worker, Round=round_)
                    props = ps.output[0].extended_properties
                    got.append((props["worker"], props["round"]))
                results[worker] = got
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert failures == []
    assert results == {n: [(n, 0), (n, 1), (n, 2)] for n in range(10)}
    assert server.counters.wsman["Create"] == 10 and server.counters.wsman["Command"] == 30


def test_twenty_servers_with_their_own_accounts_concurrently(make_server: MakeServer) -> None:
    servers = [
        make_server(echo, address=f"127.0.0.{20 + n}", username=f"admin{n}", password=f"Secret-{n}")
        for n in range(20)
    ]
    failures: list[BaseException] = []

    def work(n: int) -> None:
        try:
            wsman = client(servers[n], username=f"admin{n}", password=f"Secret-{n}")
            with RunspacePool(wsman) as pool:
                assert run(pool, f"host{n}").output[0].extended_properties == {"script": f"host{n}"}
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert failures == []
    assert all(s.counters.wsman["Delete"] == 1 and s.counters.auth_failures == 0 for s in servers)


def test_abandoned_shell_and_get_on_a_live_pool(make_server: MakeServer) -> None:
    server = make_server(echo, address="127.0.0.10")
    abandoned = RunspacePool(client(server))
    abandoned.open()
    assert abandoned.is_alive()
    abandoned.max_runspaces = 2  # SET_MAX_RUNSPACES round trip
    assert abandoned.max_runspaces == 2
    run(abandoned, "left behind")
    # The client walks away without Delete; other clients are unaffected.
    with RunspacePool(client(server)) as pool:
        assert run(pool, "other").output[0].extended_properties == {"script": "other"}
    assert server.counters.wsman["Get"] == 1
    let_idle_shells_expire(server, left=1)


@pytest.mark.shells_left  # the host goes away while its client holds a shell: that is the test
def test_stop_with_open_connections_is_prompt_and_frees_the_port(make_server: MakeServer) -> None:
    def slow(script: str, parameters: dict[str, Any]) -> ScriptResult:
        time.sleep(0.5 if script == "slow" else 0)
        return ScriptResult(output=[script])

    server = make_server(slow, address="127.0.0.11")
    port = server.port
    pool = RunspacePool(client(server))
    pool.open()
    ps = PowerShell(pool)
    ps.add_script("slow")
    ps.begin_invoke()  # a pipeline is running while the server goes away
    idle = socket.create_connection((server.address, port))  # a connection that never sends a byte
    try:
        started = time.monotonic()
        server.stop()
        assert time.monotonic() - started < 2.0
        server.stop()  # idempotent
        idle.settimeout(2.0)
        try:
            received = idle.recv(1)
        except ConnectionResetError:  # closed before it was even accepted
            received = b""
        assert received == b""
    finally:
        idle.close()
    with pytest.raises(requests.exceptions.ConnectionError):
        ps.end_invoke()

    replacement = make_server(slow, address="127.0.0.11", port=port)
    assert replacement.port == port
    with RunspacePool(client(replacement)) as fresh:
        assert run(fresh, "back").output == ["back"]


def _self_signed(directory: Path) -> tuple[str, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "WIN-LAB")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    certfile, keyfile = directory / "cert.pem", directory / "key.pem"
    certfile.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    keyfile.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return str(certfile), str(keyfile)


def test_https_with_channel_binding(make_server: MakeServer, tmp_path: Path) -> None:
    server = make_server(echo, address="127.0.0.12", tls=_self_signed(tmp_path), winrm=WinRMConfig(basic=True))
    for auth, encryption in (("negotiate", "auto"), ("ntlm", "always"), ("basic", "auto")):
        with RunspacePool(client(server, auth=auth, encryption=encryption, ssl=True)) as pool:
            assert run(pool, auth).output[0].extended_properties == {"script": auth}
    assert server.counters.auth_failures == 0


def test_cut_connection_drops_the_session_mid_step_and_the_host_stays_reachable(make_server: MakeServer) -> None:
    done: list[str] = []

    def answer(script: str, parameters: dict[str, Any]) -> ScriptResult:
        if script.startswith("slow"):
            time.sleep(0.3)  # the client's Receive is already waiting when the cut comes
        done.append(script)
        if script.endswith("cut"):
            return ScriptResult(output=[{"changed": True}], cut_connection=True)
        return ScriptResult(output=[script])

    server = make_server(answer, address="127.0.0.14", receive_wait=0.1)
    for name in ("cut", "slow cut"):
        pool = RunspacePool(client(server))
        pool.open()
        assert run(pool, "before").output == ["before"]
        with pytest.raises(requests.exceptions.ConnectionError):
            run(pool, name)
        assert done[-1] == name  # the step itself ran to its end
        # The session is gone for good. A new TCP connection has no NTLM context for the pool's
        # encrypted messages (400); the shell itself is dropped whatever reaches it.
        with pytest.raises((requests.exceptions.ConnectionError, WinRMTransportError)):
            run(pool, "after")
        with pytest.raises((requests.exceptions.ConnectionError, WinRMTransportError)):
            pool.close()
        assert "after" not in done

        with RunspacePool(client(server)) as fresh:
            assert run(fresh, "again").output == ["again"]
    assert server.counters.wsman["Create"] == 4
    let_idle_shells_expire(server, left=2)  # the two cut shells: no request reaches them any more


def test_a_fleet_host_runs_real_templates_and_drops_the_session_its_step_cuts_off() -> None:
    from orchestrator.facts import parse_facts
    from orchestrator.lab.build import build_fleet
    from orchestrator.lab.firewall import AdvFirewall
    from orchestrator.lab.fleet import LabFleet
    from orchestrator.templates import select_template

    vip = "10.20.0.200"
    model = next(
        h
        for seed in range(20)
        for h in build_fleet(10, seed=seed, profile="2008")
        if isinstance(h.firewall, AdvFirewall) and h.firewall.public and not any(n.is_loopback for n in h.nics)
    )
    with LabFleet([model], base_octet=40) as fleet:
        handle = fleet.hosts[0]

        def session() -> RunspacePool:
            return RunspacePool(WSMan(handle.address, port=handle.port, username=model.username,
                                      password=model.password, ssl=False, auth="negotiate", encryption="auto",
                                      operation_timeout=5, read_timeout=10, connection_timeout=5))

        def step(pool: RunspacePool, name: str, family: str, **parameters: Any) -> PowerShell:
            return run(pool, select_template(name, family).text, **parameters)

        pool = session()
        pool.open()
        # The win2003 variant on 2008 is the wrong template; its failure comes back as a script error.
        wrong = step(pool, "http_listen", "2003", Ensure="Present", Addresses=[vip])
        assert wrong.had_errors and "httpcfg.exe was not found" in errors_of(wrong)[0]
        created = step(pool, "loopback", "2008", Ensure="Present", PnpDeviceId="", Vips=[vip], DevconPath="")
        assert not created.had_errors and created.output[0]["created"] is True
        # Addresses before the firewall rule: 2008 flips to Public and the session is gone.
        with pytest.raises(requests.exceptions.ConnectionError):
            step(pool, "loopback_config", "2008", PnpDeviceId="", Name="DSR Loopback", Addresses=[vip],
                 Masks=["255.255.255.255"], Addresses6=[], SkipAsSource=False, FallbackMask="", Dhcp=False)

        with session() as fresh:
            facts = parse_facts(step(fresh, "facts", "default").output[0])
        assert facts.firewall.current_profiles == 4
        loopback = facts.adapter_by_pnp_id(facts.marker["LoopbackPnpId"])
        assert loopback is not None and loopback.has_address(vip)
        assert handle.counters.steps["loopback_config"] == 1 and handle.counters.steps["http_listen"] == 1
        let_idle_shells_expire(handle, left=1)



def test_only_transport_imports_pypsrp() -> None:
    import pathlib

    package = pathlib.Path(__file__).resolve().parents[2] / "orchestrator"
    importers = sorted(str(p.relative_to(package)) for p in package.rglob("*.py")
                       if re.search(r"^(from|import) pypsrp", p.read_text(), re.MULTILINE))
    assert importers == ["transport.py"]
