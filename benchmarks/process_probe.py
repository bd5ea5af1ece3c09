"""Peak memory and disk of a command's processes, sampled from /proc while it runs (Linux).

Dagster's multiprocess executor forks each step from a fork server, so a step is a grandchild of
``dagster asset materialize`` and ``getrusage(RUSAGE_CHILDREN)`` in the caller would mix every step
together. The probe polls instead: every ``interval`` seconds it walks /proc for the processes below
the command and records, per process, its peak resident set (``VmHWM``, the kernel's own high-water
mark, so a peak between two samples is not lost) and its current RSS (``VmRSS``, summed over a
step's process tree to count a step's worker processes with it); and the disk used under folders
(allocated blocks, each inode once).

    with Probe(root_pid, folders={"data": data_dir}) as probe:
        ...
    probe.peak_rss(pid)              # bytes: VmHWM of that process
    probe.peak_tree_rss(pid)         # bytes: largest sum of VmRSS over it and its descendants
    probe.peak_tree_private(pid)     # bytes: the same for memory not shared with another process
    probe.peak_disk("data", t0, t1)  # bytes: most used under data_dir between two times
    probe.cpu_seconds()              # user + system seconds of all of them
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path


def _status_kb(pid: int) -> tuple[int, int] | None:
    """(VmRSS, VmHWM) in kB, or None for a process gone or without memory (a zombie)."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    values = {}
    for line in text.splitlines():
        if line.startswith(("VmRSS:", "VmHWM:")):
            name, value = line.split(":", 1)
            values[name] = int(value.split()[0])
    return (values["VmRSS"], values["VmHWM"]) if len(values) == 2 else None


def _private_kb(pid: int) -> int:
    """Memory only this process holds (Private_Clean + Private_Dirty): not the pages a forked step
    still shares with the fork server that imported Dagster, PyTorch and datasets."""
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return 0
    fields = ("Private_Clean:", "Private_Dirty:")
    return sum(int(line.split()[1]) for line in text.splitlines() if line.startswith(fields))


_TICKS = os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pid: int, default: float) -> float:
    """User + system seconds the process itself has used (not its children's: they are counted
    as processes of their own)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return default
    return (int(fields[11]) + int(fields[12])) / _TICKS


def _parents() -> dict[int, int]:
    """pid -> parent pid of every process now."""
    parents = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                stat = Path(entry.path, "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])  # the name may hold spaces
    return parents


def descendants(root: int, parents: dict[int, int]) -> set[int]:
    children: dict[int, list[int]] = {}
    for pid, parent in parents.items():
        children.setdefault(parent, []).append(pid)
    found, todo = set(), [root]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def disk_used(folder: Path) -> int:
    """Bytes allocated under ``folder`` (not following links; a hard-linked file counted once)."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for top, dirs, files in os.walk(folder):
        for name in files + dirs:
            try:
                st = os.lstat(os.path.join(top, name))
            except OSError:
                continue  # deleted between listing and stat
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_blocks * 512
    return total


@dataclass
class Probe:
    root: int
    folders: dict[str, Path] = field(default_factory=dict)
    interval: float = 0.25
    hwm: dict[int, int] = field(default_factory=dict)  # pid -> peak VmHWM seen, bytes
    parent: dict[int, int] = field(default_factory=dict)  # pid -> parent pid, as last seen
    rss_samples: list[dict[int, int]] = field(default_factory=list)  # per poll: pid -> VmRSS bytes
    private_samples: list[dict[int, int]] = field(default_factory=list)  # per poll: pid -> private bytes
    disk_samples: dict[str, list[tuple[float, int]]] = field(default_factory=dict)  # name -> (time, bytes)
    cpu: dict[int, float] = field(default_factory=dict)  # pid -> its own user + system seconds, last seen

    def __enter__(self) -> Probe:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def sample(self) -> None:
        parents = _parents()
        rss: dict[int, int] = {}
        private: dict[int, int] = {}
        for pid in descendants(self.root, parents) | {self.root}:
            found = _status_kb(pid)
            if found is not None:
                rss[pid] = found[0] * 1024
                private[pid] = _private_kb(pid) * 1024
                self.hwm[pid] = max(self.hwm.get(pid, 0), found[1] * 1024)
                self.parent[pid] = parents.get(pid, 0)
                self.cpu[pid] = _cpu_seconds(pid, self.cpu.get(pid, 0.0))
        self.rss_samples.append(rss)
        self.private_samples.append(private)
        now = time.time()
        for name, folder in self.folders.items():
            self.disk_samples.setdefault(name, []).append((now, disk_used(folder) if folder.exists() else 0))

    def peak_rss(self, pid: int) -> int:
        return self.hwm.get(pid, 0)

    def tree(self, pid: int) -> set[int]:
        return descendants(pid, self.parent) | {pid}

    def peak_tree_rss(self, pid: int) -> int:
        """Largest sampled sum of RSS over ``pid`` and its descendants."""
        members = self.tree(pid)
        return max((sum(v for p, v in sample.items() if p in members) for sample in self.rss_samples), default=0)

    def peak_tree_private(self, pid: int) -> int:
        """Largest sampled sum of private memory over ``pid`` and its descendants."""
        members = self.tree(pid)
        return max((sum(v for p, v in sample.items() if p in members) for sample in self.private_samples), default=0)

    def cpu_seconds(self) -> float:
        """CPU time of every process seen below the command, the command included: a lower bound
        (the last quarter second of each process, and processes shorter than that, are missed).
        ``getrusage(RUSAGE_CHILDREN)`` cannot see it: the fork server is never reaped by its parent."""
        return sum(self.cpu.values())

    def peak_disk(self, name: str, start: float = 0.0, end: float = float("inf")) -> int:
        return max((b for t, b in self.disk_samples.get(name, []) if start <= t <= end), default=0)
