"""The pod runner: a minimal kubelet that backs each pod on a kwok node with a real process.

kwok makes fake nodes look healthy but runs nothing. For rollout gates to judge
real code, every pod the scheduler binds to a kwok node is started here as a
local process from the container's ``command``/``args`` and resolved env, on a
unique loopback pod IP (``POD_IP`` and ``TIERGATE_HTTP_HOST``). The runner then
writes pod status through the status subresource as a kubelet would: phase,
IPs, container states, restart counts, and the Ready condition following the
container's readinessProbe. Liveness failures and exits restart the process
with backoff; a pod marked for deletion gets SIGTERM, its grace period, then
SIGKILL, and is removed with grace 0.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ctypes
import datetime as dt
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Coroutine, Mapping
from pathlib import Path
from typing import Any, Literal

import httpx
from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException

from tiergate_kits.devcluster.podspec import ContainerConfigError, ProbeSpec, argv, resolve_env
from tiergate_kits.devcluster.podstate import (
    ContainerView,
    IpPool,
    ProbeState,
    pod_status,
    restart_delay,
    should_restart,
)

log = logging.getLogger(__name__)

DEFAULT_POD_CIDR = "127.2.0.0/16"
_PR_SET_PDEATHSIG = 1


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _die_with_parent() -> None:
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def _kill_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


class NodeApi:
    """The runner's blocking Kubernetes calls, run off the event loop by callers."""

    def __init__(self, api: client.ApiClient) -> None:
        self.core = client.CoreV1Api(api)

    def lookup(self, namespace: str, kind: str, name: str) -> dict[str, str] | None:
        """Decoded data of a Secret or ConfigMap, None if it does not exist."""
        try:
            if kind == "Secret":
                secret = self.core.read_namespaced_secret(name, namespace)
                return {
                    k: base64.b64decode(v).decode(errors="replace") for k, v in (secret.data or {}).items()
                }
            cm = self.core.read_namespaced_config_map(name, namespace)
            return dict(cm.data or {})
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def patch_status(self, namespace: str, name: str, status: Mapping[str, Any]) -> None:
        """Replace the pod's status fields with a JSON merge patch."""
        try:
            self.core.patch_namespaced_pod_status(
                name,
                namespace,
                {"status": status},
                _content_type="application/merge-patch+json",
            )
        except ApiException as exc:
            if exc.status != 404:
                raise

    def delete_now(self, namespace: str, name: str, uid: str) -> None:
        """Delete the pod with grace 0, only if it is still the same object."""
        try:
            self.core.delete_namespaced_pod(
                name,
                namespace,
                body=client.V1DeleteOptions(
                    grace_period_seconds=0, preconditions=client.V1Preconditions(uid=uid)
                ),
            )
        except ApiException as exc:
            if exc.status not in (404, 409):
                raise

    def node_ips(self, selector: str) -> dict[str, str]:
        """Managed node names mapped to their InternalIP (127.0.0.1 when unset)."""
        resp = self.core.list_node(label_selector=selector, _preload_content=False)
        out: dict[str, str] = {}
        for node in json.loads(resp.data)["items"]:
            ip = "127.0.0.1"
            for addr in (node.get("status") or {}).get("addresses") or []:
                if addr.get("type") == "InternalIP":
                    ip = addr["address"]
            out[node["metadata"]["name"]] = ip
        return out


class ContainerRunner:
    """Runs one container as a process, restarting it and probing it."""

    def __init__(self, pod: PodRunner, container: Mapping[str, Any]) -> None:
        self.pod = pod
        self.spec = container
        self.name = str(container.get("name", ""))
        previous = [
            s
            for s in ((pod.pod.get("status") or {}).get("containerStatuses") or [])
            if s.get("name") == self.name
        ]
        self.view = ContainerView(
            name=self.name,
            image=str(container.get("image", "")),
            restart_count=int(previous[0].get("restartCount", 0)) if previous else 0,
        )
        self.proc: asyncio.subprocess.Process | None = None
        self._stop_event = asyncio.Event()
        self._liveness_failed = asyncio.Event()
        self.readiness = ProbeSpec.parse(container.get("readinessProbe"), container)
        self.liveness = ProbeSpec.parse(container.get("livenessProbe"), container)
        self.startup = ProbeSpec.parse(container.get("startupProbe"), container)

    @property
    def stopping(self) -> bool:
        """Whether the pod is being stopped."""
        return self._stop_event.is_set()

    def request_stop(self) -> None:
        """Stop restarting the process."""
        self._stop_event.set()

    def _set(self, **changes: Any) -> None:
        self.view = self.view.with_(**changes)
        self.pod.changed()

    async def run(self) -> None:
        """Start, supervise and restart the process until the pod stops."""
        failures = 0
        while not self.stopping:
            try:
                command = argv(self.spec, self.pod.process_env(self.name))
                await self._start(command)
                failures = 0
            except (ContainerConfigError, OSError) as exc:
                failures += 1
                log.warning(
                    "Container failed to start pod=%s container=%s error=%s",
                    self.pod.key,
                    self.name,
                    exc,
                )
                self._set(state={"waiting": {"reason": "RunContainerError", "message": str(exc)[:500]}})
                await self._sleep(restart_delay(failures))
                continue
            code = await self._supervise()
            if self._stop_event.is_set():
                return
            finished = {
                "terminated": {
                    "exitCode": code,
                    "reason": "Completed" if code == 0 else "Error",
                    "startedAt": self.view.state.get("running", {}).get("startedAt", _now()),
                    "finishedAt": _now(),
                }
            }
            if not should_restart(self.pod.restart_policy, code):
                self._set(state=finished, ready=False, started=False, terminal=True, exit_code=code)
                return
            delay = restart_delay(self.view.restart_count + 1)
            log.info(
                "Container exited pod=%s container=%s exitCode=%s restartIn=%s",
                self.pod.key,
                self.name,
                code,
                delay,
            )
            self._set(
                state={"waiting": {"reason": "CrashLoopBackOff"}},
                last_state=finished,
                ready=False,
                started=False,
            )
            await self._sleep(delay)
            if not self._stop_event.is_set():
                self.view = self.view.with_(restart_count=self.view.restart_count + 1)

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop_event.wait(), seconds)

    async def _start(self, command: list[str]) -> None:
        log_file = self.pod.log_path.open("ab")
        try:
            log_file.write(f"--- {_now()} start container={self.name}\n".encode())
            log_file.flush()
            self.proc = await asyncio.create_subprocess_exec(
                *command,
                env=self.pod.process_env(self.name),
                cwd=self.pod.cwd(self.spec),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log_file,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        finally:
            log_file.close()
        log.info(
            "Container started pod=%s container=%s pid=%s ip=%s",
            self.pod.key,
            self.name,
            self.proc.pid,
            self.pod.ip,
        )
        self._liveness_failed.clear()
        self._set(
            state={"running": {"startedAt": _now()}},
            started=self.startup is None,
            ready=self.readiness is None and self.startup is None,
        )

    async def _supervise(self) -> int:
        assert self.proc is not None
        proc = self.proc
        probes = asyncio.create_task(self._probe_loop())
        waiter = asyncio.create_task(proc.wait())
        killer = asyncio.create_task(self._liveness_failed.wait())
        try:
            await asyncio.wait({waiter, killer}, return_when=asyncio.FIRST_COMPLETED)
            if killer.done() and not waiter.done():
                log.info("Liveness probe failed pod=%s container=%s", self.pod.key, self.name)
                await self.terminate(self.pod.grace_seconds)
            return await waiter
        finally:
            for task in (probes, killer, waiter):
                task.cancel()
            await asyncio.gather(probes, killer, return_exceptions=True)

    async def _probe_loop(self) -> None:
        started = self.startup is None
        if self.startup is not None:
            state = ProbeState(ok=False)
            await asyncio.sleep(self.startup.initial_delay)
            while not state.ok:
                passed = await self.pod.probe(self.startup, self.name)
                state = state.observe(passed, self.startup.success_threshold, self.startup.failure_threshold)
                if not state.ok and state.failures >= self.startup.failure_threshold:
                    self._liveness_failed.set()
                    return
                if not state.ok:
                    await asyncio.sleep(self.startup.period)
            started = True
            self._set(started=True, ready=self.readiness is None)
        tasks = []
        if started and self.readiness is not None:
            tasks.append(self._loop("readiness", self.readiness, ProbeState(ok=False)))
        if started and self.liveness is not None:
            tasks.append(self._loop("liveness", self.liveness, ProbeState(ok=True)))
        await asyncio.gather(*tasks)

    async def _loop(
        self, which: Literal["readiness", "liveness"], spec: ProbeSpec, state: ProbeState
    ) -> None:
        await asyncio.sleep(spec.initial_delay)
        while True:
            passed = await self.pod.probe(spec, self.name)
            state = state.observe(passed, spec.success_threshold, spec.failure_threshold)
            if which == "readiness":
                if state.ok != self.view.ready:
                    log.info(
                        "Readiness changed pod=%s container=%s ready=%s",
                        self.pod.key,
                        self.name,
                        state.ok,
                    )
                    self._set(ready=state.ok)
            elif not state.ok:
                self._liveness_failed.set()
                return
            await asyncio.sleep(spec.period)

    async def terminate(self, grace: float) -> None:
        """SIGTERM the process group, then SIGKILL it after grace seconds."""
        proc = self.proc
        if proc is None or proc.returncode is not None:
            return
        _kill_group(proc.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), timeout=max(grace, 0.0))
        except TimeoutError:
            _kill_group(proc.pid, signal.SIGKILL)
            await proc.wait()
        _kill_group(proc.pid, signal.SIGKILL)

    def pid(self) -> int | None:
        """The running process id, if any."""
        if self.proc is not None and self.proc.returncode is None:
            return self.proc.pid
        return None


class PodRunner:
    """Owns the processes of one pod and writes its status."""

    def __init__(self, runtime: RunnerState, pod: Mapping[str, Any], host_ip: str) -> None:
        meta = pod["metadata"]
        self.runtime = runtime
        self.namespace: str = meta["namespace"]
        self.name: str = meta["name"]
        self.uid: str = meta["uid"]
        self.key = f"{self.namespace}/{self.name}"
        self.pod = pod
        self.host_ip = host_ip
        spec = pod.get("spec") or {}
        self.restart_policy: str = spec.get("restartPolicy") or "Always"
        self.grace_seconds = float(spec.get("terminationGracePeriodSeconds", 30))
        old_status = pod.get("status") or {}
        self.ip = runtime.pool.allocate(self.uid, old_status.get("podIP"))
        self.start_time: str = old_status.get("startTime") or _now()
        self.log_path = runtime.pods_dir / f"{self.namespace}_{self.name}.log"
        self.env: dict[str, dict[str, str]] = {}
        self.containers: list[ContainerRunner] = []
        self._changed = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._last_status: dict[str, Any] | None = None
        self.deleting = False
        self.done = asyncio.Event()

    def changed(self) -> None:
        """Note that the status should be written again."""
        self._changed.set()

    def cwd(self, container: Mapping[str, Any]) -> str:
        """The process working directory: workingDir if it exists, else a per-pod dir."""
        wd = container.get("workingDir")
        if wd and Path(wd).is_dir():
            return str(wd)
        path = self.runtime.pods_dir / f"{self.namespace}_{self.name}"
        path.mkdir(parents=True, exist_ok=True)
        return str(path)

    def process_env(self, container: str) -> dict[str, str]:
        """The process environment: container env over a minimal base, runner values last."""
        base = {
            "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
            "HOME": os.environ.get("HOME", "/root"),
            "LANG": os.environ.get("LANG", "C.UTF-8"),
            "HOSTNAME": self.name,
        }
        env = {**base, **self.env[container]}
        env["PATH"] = f"{self.runtime.bin_path}{os.pathsep}{env['PATH']}"
        env["POD_IP"] = self.ip
        env["TIERGATE_HTTP_HOST"] = self.ip
        return env

    async def start(self) -> None:
        """Resolve each container's env and start its process."""
        specs = (self.pod.get("spec") or {}).get("containers") or []
        self.containers = []
        for spec in specs:
            runner = ContainerRunner(self, spec)
            self.containers.append(runner)
        for c in self.containers:
            try:
                self.env[c.name] = await asyncio.to_thread(
                    resolve_env,
                    self.pod,
                    c.spec,
                    pod_ip=self.ip,
                    host_ip=self.host_ip,
                    lookup=lambda kind, name: self.runtime.kube.lookup(self.namespace, kind, name),
                )
            except (ContainerConfigError, ApiException) as exc:
                self.env[c.name] = {}
                c.view = c.view.with_(
                    state={"waiting": {"reason": "CreateContainerConfigError", "message": str(exc)}}
                )
                log.warning("Container config error pod=%s container=%s", self.key, c.name)
                continue
            self._tasks.append(asyncio.create_task(c.run()))
        self._tasks.append(asyncio.create_task(self._status_loop()))
        self.changed()

    async def _status_loop(self) -> None:
        while True:
            await self._changed.wait()
            self._changed.clear()
            if self.deleting:
                continue
            status = pod_status(
                previous=self._last_status or self.pod.get("status"),
                host_ip=self.host_ip,
                pod_ip=self.ip,
                start_time=self.start_time,
                now=_now(),
                containers=[c.view for c in self.containers],
                pids={c.name: pid for c in self.containers if (pid := c.pid())},
            )
            if status == self._last_status:
                continue
            try:
                await asyncio.to_thread(self.runtime.kube.patch_status, self.namespace, self.name, status)
                self._last_status = status
            except Exception as exc:
                log.warning("Pod status write failed pod=%s error=%s", self.key, exc)
                await asyncio.sleep(1)
                self.changed()

    async def probe(self, spec: ProbeSpec, container: str) -> bool:
        """Run one probe against this pod; True when it passes."""
        host = spec.host or self.ip
        try:
            if spec.kind == "http":
                url = f"{spec.scheme}://{host}:{spec.port}{spec.path}"
                response = await self.runtime.http.get(url, headers=dict(spec.headers), timeout=spec.timeout)
                return 200 <= response.status_code < 400
            if spec.kind == "tcp":
                _, writer = await asyncio.wait_for(asyncio.open_connection(host, spec.port), spec.timeout)
                writer.close()
                return True
            proc = await asyncio.create_subprocess_exec(
                *spec.command,
                env=self.process_env(container),
                cwd=self.cwd({}),
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL,
                start_new_session=True,
            )
            try:
                return await asyncio.wait_for(proc.wait(), spec.timeout) == 0
            except TimeoutError:
                _kill_group(proc.pid, signal.SIGKILL)
                await proc.wait()
                return False
        except (OSError, TimeoutError, httpx.HTTPError):
            return False

    async def stop(self, grace: float) -> None:
        """Stop every process of the pod (SIGTERM, grace, SIGKILL)."""
        self.deleting = True
        for c in self.containers:
            c.request_stop()
        await asyncio.gather(*(c.terminate(grace) for c in self.containers))
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self.runtime.pool.release(self.uid)
        self.done.set()

    async def delete(self, grace: float) -> None:
        """Kill the pod's processes and remove the pod object, like a kubelet on deletion."""
        log.info("Stopping pod pod=%s grace=%s", self.key, grace)
        await self.stop(grace)
        await asyncio.to_thread(self.runtime.kube.delete_now, self.namespace, self.name, self.uid)
        log.info("Pod removed pod=%s", self.key)


class RunnerState:
    """Shared state of the runner: the API, the IP pool, paths and the HTTP client."""

    def __init__(
        self,
        kube: NodeApi,
        pool: IpPool,
        pods_dir: Path,
        node_selector: str,
        bin_path: str,
    ) -> None:
        self.kube = kube
        self.pool = pool
        self.pods_dir = pods_dir
        self.node_selector = node_selector
        self.bin_path = bin_path
        self.http = httpx.AsyncClient(verify=False, trust_env=False)
        self.pods: dict[str, PodRunner] = {}
        self.nodes: dict[str, str] = {}
        self._nodes_checked = 0.0
        self._background: set[asyncio.Task[None]] = set()

    async def node_ip(self, node: str) -> str | None:
        """The managed node's IP, None if the node is not managed by this runner."""
        if node not in self.nodes and time.monotonic() - self._nodes_checked > 2:
            self._nodes_checked = time.monotonic()
            self.nodes = await asyncio.to_thread(self.kube.node_ips, self.node_selector)
        return self.nodes.get(node)

    async def handle(self, kind: str, pod: dict[str, Any]) -> None:
        """React to one watch event of a pod."""
        meta = pod.get("metadata") or {}
        uid = meta.get("uid", "")
        runner = self.pods.get(uid)
        if kind == "DELETED":
            if runner is not None:
                self.pods.pop(uid, None)
                await runner.stop(0)
            return
        if runner is not None:
            runner.pod = pod
            if meta.get("deletionTimestamp") and not runner.deleting:
                grace = meta.get("deletionGracePeriodSeconds")
                runner.deleting = True
                self._spawn(self._delete(runner, float(grace or 0)))
            return
        node = (pod.get("spec") or {}).get("nodeName")
        phase = (pod.get("status") or {}).get("phase")
        if not node or phase in ("Succeeded", "Failed"):
            return
        host_ip = await self.node_ip(node)
        if host_ip is None:
            return
        runner = PodRunner(self, pod, host_ip)
        self.pods[uid] = runner
        if meta.get("deletionTimestamp"):
            runner.deleting = True
            self._spawn(self._delete(runner, 0))
            return
        log.info("Starting pod pod=%s node=%s ip=%s", runner.key, node, runner.ip)
        await runner.start()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _delete(self, runner: PodRunner, grace: float) -> None:
        try:
            await runner.delete(grace)
        finally:
            self.pods.pop(runner.uid, None)

    async def resync(self, pods: list[dict[str, Any]]) -> None:
        """Reconcile with a full listing: stop processes of pods that no longer exist."""
        live = {p["metadata"]["uid"] for p in pods}
        for uid in list(self.pods):
            if uid not in live:
                await self.handle("DELETED", self.pods[uid].pod)  # type: ignore[arg-type]
        for pod in pods:
            await self.handle("MODIFIED", pod)

    async def shutdown(self) -> None:
        """Kill every pod process quickly (the runner is going away; pods stay)."""
        await asyncio.gather(*(r.stop(2) for r in list(self.pods.values())))
        self.pods.clear()
        await self.http.aclose()


def _watch_pods(
    core: client.CoreV1Api,
    emit: Any,
    stop: threading.Event,
) -> None:
    while not stop.is_set():
        try:
            resp: Any = core.list_pod_for_all_namespaces(_preload_content=False)
            listing = json.loads(resp.data)
            emit(("SYNC", listing["items"]))
            rv = listing["metadata"]["resourceVersion"]
            while not stop.is_set():
                w = watch.Watch()
                for event in w.stream(
                    core.list_pod_for_all_namespaces,
                    resource_version=rv,
                    timeout_seconds=60,
                    allow_watch_bookmarks=True,
                ):
                    obj = event["raw_object"]
                    rv = obj.get("metadata", {}).get("resourceVersion", rv)
                    if event["type"] == "ERROR":
                        raise ApiException(status=obj.get("code", 500), reason="watch error")
                    if event["type"] != "BOOKMARK":
                        emit((event["type"], obj))
                    if stop.is_set():
                        w.stop()
                        return
        except Exception as exc:
            if stop.is_set():
                return
            log.warning("Pod watch restarting error=%s", str(exc)[:200])
            time.sleep(1)


async def run(
    kubeconfig: str,
    workdir: Path,
    *,
    node_selector: str = "type=kwok",
    pod_cidr: str = DEFAULT_POD_CIDR,
) -> None:
    """Run the pod runner until SIGTERM/SIGINT."""
    api: client.ApiClient = config.new_client_from_config(config_file=kubeconfig)
    kube = NodeApi(api)
    pods_dir = workdir / "pods"
    pods_dir.mkdir(parents=True, exist_ok=True)
    runtime = RunnerState(kube, IpPool(pod_cidr), pods_dir, node_selector, str(Path(sys.executable).parent))
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
    stop_watch = threading.Event()
    stopping = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)

    def emit(item: tuple[str, Any]) -> None:
        loop.call_soon_threadsafe(queue.put_nowait, item)

    thread = threading.Thread(
        target=_watch_pods, args=(kube.core, emit, stop_watch), daemon=True, name="pod-watch"
    )
    thread.start()
    log.info("Pod runner started nodeSelector=%s podCIDR=%s", node_selector, pod_cidr)
    stop_task = asyncio.create_task(stopping.wait())
    try:
        while not stopping.is_set():
            get = asyncio.create_task(queue.get())
            await asyncio.wait({get, stop_task}, return_when=asyncio.FIRST_COMPLETED)
            if not get.done():
                get.cancel()
                break
            kind, obj = get.result()
            try:
                if kind == "SYNC":
                    await runtime.resync(obj)
                else:
                    await runtime.handle(kind, obj)
            except Exception:
                log.exception("Pod event failed kind=%s", kind)
    finally:
        stop_watch.set()
        log.info("Pod runner stopping pods=%s", len(runtime.pods))
        await runtime.shutdown()
        api.close()
