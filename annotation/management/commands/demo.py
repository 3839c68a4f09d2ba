"""python manage.py demo [--addr HOST:PORT] [--no-serve | --check]

The `make demo` experience: migrate, seed the demo people, project and images (idempotently),
and a second project judged by a simulated crowd with its filter run and export already made
(curation's `seed_simulated_crowd`), print where to go and how to log in, then run the web
server and a real Celery worker side by side until Ctrl-C.
"""
import hashlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from annotation import demo_art
from annotation.assignment import work_units_open
from annotation.image_sources import SourcePolicy
from annotation.importing import manifest_import
from annotation.models import Image, MachineAnnotator, Membership, Project, TaskType, text_digest
from annotation.services import membership_set, project_create, project_update, researcher_grant

PROJECT_SLUG = "demo"
CROWD_SLUG = "simulated-crowd"  # curation.demo_crowd.CROWD_SLUG (annotation does not import curation)
CREDENTIALS_NAME = "demo-credentials.json"
ITEMS_DIR_NAME = "demo-items"
# A folder the demo's server may import from (IMPORT_LOCAL_ROOTS), with a sample to try an import on.
IMPORTS_DIR_NAME = "imports"
SAMPLE_DIR_NAME = "sample"
READY_TIMEOUT_S = 60
STOP_TIMEOUT_S = 10


@dataclass(frozen=True)
class DemoUser:
    username: str
    role: str  # what the banner says; also the project role for annotators


DEMO_USERS = [
    DemoUser("admin", "admin (superuser)"),
    DemoUser("researcher", "researcher"),
    DemoUser("annotator1", "annotator"),
    DemoUser("annotator2", "annotator"),
    DemoUser("annotator3", "annotator"),
]
DEMO_ANNOTATORS = [d.username for d in DEMO_USERS if d.role == "annotator"]
# Judgments wanted per unit: fewer than there are annotators. With more, no unit could ever
# complete (each person judges a unit once): progress would count as remaining work that nobody
# can take.
DEMO_OVERLAP = 2
assert DEMO_OVERLAP < len(DEMO_ANNOTATORS)


class Command(BaseCommand):
    help = ("Set up the demo (database, users, a project with generated images) and run the web server "
            "with a Celery worker until Ctrl-C.")

    def add_arguments(self, parser):
        parser.add_argument("--addr", default="127.0.0.1:8000",
                            help="HOST:PORT (or PORT) for the web server (default 127.0.0.1:8000).")
        mode = parser.add_mutually_exclusive_group()
        mode.add_argument("--no-serve", action="store_true",
                          help="Only migrate, seed and print the logins; start nothing.")
        mode.add_argument("--check", action="store_true",
                          help="Check the seeded filter run and export of the simulated crowd, start the web "
                               "server and the worker, wait until both are ready, stop them and exit 0 "
                               "(non-zero if a check fails or either is not ready within 60 s).")

    def handle(self, *args, addr, no_serve, check, **options):
        self.verbosity = options["verbosity"]
        host, port = _parse_addr(addr)
        if not no_serve and not _port_free(host, port):
            raise CommandError(f"Port {port} on {host} is in use (another demo?); pass --addr {host}:{port + 1} "
                               f"or stop what listens there.")
        self.note("Bringing the database up to date...")
        call_command("migrate", interactive=False, verbosity=max(0, self.verbosity - 1), stdout=self.stdout)
        logins = self.seed_users()
        project = self.seed_project()
        self.seed_images(project)
        work_units_open(project=project)
        self.seed_import_sample()
        # mlworkers' own command (annotation does not import mlworkers): the catalogue's judges.
        call_command("seed_catalogue", verbosity=self.verbosity, stdout=self.stdout)
        # curation's own command too: the simulated crowd's judgments, filter run and export.
        self.note("Seeding the simulated crowd's project (judgments, filter run, export)...")
        call_command("seed_simulated_crowd", images_dir=str(Path(settings.VAR_DIR) / ITEMS_DIR_NAME),
                     researcher="researcher", admin="admin", verbosity=self.verbosity, stdout=self.stdout)
        if check:
            call_command("seed_simulated_crowd", check=True, verbosity=self.verbosity, stdout=self.stdout)
        base_url = f"http://{_client_host(host)}:{port}"
        self.print_banner(base_url, project, logins, serving=not no_serve)
        if no_serve:
            return
        DemoProcesses(self, f"{host}:{port}", base_url).run(check_only=check)

    # --- seeding ---------------------------------------------------------------------------

    def seed_users(self) -> dict[str, str | None]:
        """Create the demo users, or reuse them with the passwords in the credentials file.

        Returns username -> password to show (None where someone changed it since).
        """
        path = Path(settings.VAR_DIR) / CREDENTIALS_NAME
        saved = _read_credentials(path)
        User = get_user_model()
        shown: dict[str, str | None] = {}
        changed = False
        for demo_user in DEMO_USERS:
            user = User.objects.filter(username=demo_user.username).first()
            password = saved.get(demo_user.username)
            if user is None:
                password = password or secrets.token_urlsafe(9)
                user = User(username=demo_user.username)
                user.set_password(password)
                changed |= demo_user.username not in saved
            elif password is None:
                # The user exists but nobody recorded its password: give it a fresh one.
                password = secrets.token_urlsafe(9)
                user.set_password(password)
                changed = True
            elif not user.check_password(password):
                self.stderr.write(f"The password of {demo_user.username!r} was changed after the demo set it; "
                                  f"leaving it alone (reset it with `manage.py changepassword {demo_user.username}`).")
                shown[demo_user.username] = None
                continue
            if demo_user.username == "admin":
                user.is_staff = user.is_superuser = True
            user.save()
            if demo_user.username == "researcher":
                researcher_grant(user=user)
            saved[demo_user.username] = shown[demo_user.username] = password
        if changed or not path.exists():
            _write_credentials(path, saved)
        return shown

    def seed_project(self) -> Project:
        User = get_user_model()
        people = {u.username: u for u in User.objects.filter(username__in=[d.username for d in DEMO_USERS])}
        project = Project.objects.filter(slug=PROJECT_SLUG).first()
        if project is None:
            project = project_create(
                creator=people["researcher"], slug=PROJECT_SLUG, name="Demo: shapes, colours and counts",
                instructions=("Each prompt asks for coloured shapes in given numbers and places. Prefer the image "
                              "that shows exactly what the prompt says; flag noise blotches, smeared or "
                              "duplicated regions and shapes cut off by the frame."),
                task_types=list(TaskType.values), overlap=DEMO_OVERLAP,
            )
        elif project.overlap >= len(DEMO_ANNOTATORS):  # seeded by an older demo (overlap 3, two annotators)
            project = project_update(project=project, overlap=DEMO_OVERLAP)
        for name in DEMO_ANNOTATORS:
            membership_set(project=project, user=people[name], role=Membership.Role.ANNOTATOR)
        membership_set(project=project, user=people["admin"], role=Membership.Role.ADMIN)
        return project

    def seed_images(self, project: Project) -> None:
        """Draw the demo images once into VAR_DIR/demo-items and import whatever the project lacks."""
        out_dir = Path(settings.VAR_DIR) / ITEMS_DIR_NAME
        manifest = out_dir / demo_art.MANIFEST_NAME
        entries = _manifest_entries(manifest, out_dir)
        if entries is None:
            self.note("Drawing the demo images (once)...")
            demo_art.write_demo_manifest(out_dir)
            entries = _manifest_entries(manifest, out_dir)
        wanted = {(text_digest(prompt), _file_sha256(path)) for prompt, path in entries}
        have = set(Image.objects.filter(project=project).values_list("prompt__text_sha256", "sha256"))
        if wanted <= have:
            self.note(f"Demo images already imported ({len(wanted)} images).")
            return
        self.note(f"Importing {len(wanted - have)} demo images...")
        with open(manifest, "rb") as lines:
            summary = manifest_import(project=project, lines=lines,
                                      policy=SourcePolicy.from_settings(images_root=out_dir))
        if summary.errors:
            raise CommandError("The demo import failed:\n" + "\n".join(str(e) for e in summary.errors[:20]))
        self.note(f"Imported {summary.images_created} images under {summary.prompts_created} prompts, "
                  f"{summary.comparisons_created} comparisons.")

    def seed_import_sample(self) -> None:
        """Draw a second set of images with their manifest into VAR_DIR/imports/sample (once): what a
        researcher trying the import page uploads, naming the server folder `sample`."""
        sample = Path(settings.VAR_DIR) / IMPORTS_DIR_NAME / SAMPLE_DIR_NAME
        if not (sample / demo_art.MANIFEST_NAME).exists():
            self.note("Drawing a sample import (once)...")
            demo_art.write_demo_manifest(sample, seed=11)

    # --- output ----------------------------------------------------------------------------

    def note(self, message: str) -> None:
        if self.verbosity >= 1:
            self.stdout.write(message)

    def print_banner(self, base_url: str, project: Project, logins: dict[str, str | None], *, serving: bool) -> None:
        if self.verbosity < 1:
            return
        counts = (f"{project.prompts.count()} prompts, {project.images.count()} images, "
                  f"{project.comparisons.count()} comparisons")
        rule = "=" * 72
        lines = [
            rule,
            "  PrefStudio demo" + ("" if serving else " is set up (not serving: run `make demo` to start it)"),
            "",
            f"  App        {base_url}/",
            f"  Admin      {base_url}/admin/",
            f"  API docs   {base_url}/api/docs/",
            f"  Project    {project.slug} ({counts}, overlap {project.overlap}): annotate it yourself",
            f"  Import     a sample to try the import page on: upload "
            f"{Path(settings.VAR_DIR) / IMPORTS_DIR_NAME / SAMPLE_DIR_NAME / demo_art.MANIFEST_NAME}",
            f"             with the server folder {Path(settings.VAR_DIR) / IMPORTS_DIR_NAME} / {SAMPLE_DIR_NAME}",
            f"  Results    {CROWD_SLUG}: judged by a simulated crowd, with a finished filter run and export;",
            "             sign in as researcher: the home page says where to look (Report, Export).",
            "",
            f"  {'user':<12} {'role':<20} password",
        ]
        for demo_user in DEMO_USERS:
            password = logins.get(demo_user.username) or "(changed since; not shown)"
            lines.append(f"  {demo_user.username:<12} {demo_user.role:<20} {password}")
        lines += ["", f"  Judges     {MachineAnnotator.objects.count()} machine annotators (the catalogue's), at "
                      f"{base_url}/admin/annotation/machineannotator/; launch jobs at {base_url}/projects/"
                      f"{project.slug}/auto-jobs/.",
                  "             Weights download from the model hub on first use; without it a job fails at once.",
                  "             A local judge: the openai_chat annotators point at Ollama "
                  "(http://localhost:11434/v1) and llama.cpp's server (http://localhost:8080/v1).",
                  "", f"  Logins are kept in {Path(settings.VAR_DIR) / CREDENTIALS_NAME}."]
        if serving:
            lines.append("  Starting the web server and a Celery worker; press Ctrl-C to stop both.")
        lines.append(rule)
        self.stdout.write("\n".join(lines))


class DemoProcesses:
    """Runs `runserver` and a Celery worker as child processes, forwarding their output.

    Each child leads its own process group, so a Ctrl-C in the terminal reaches only this
    process, which then stops both children in order (terminate, wait, kill).
    """

    def __init__(self, command: Command, addr: str, base_url: str):
        self.command = command
        self.addr = addr
        self.base_url = base_url
        self.procs: dict[str, subprocess.Popen] = {}
        self.worker_ready = threading.Event()
        self.stop_requested = threading.Event()
        self.stopping = False
        self.output_lock = threading.Lock()
        self.readers: list[threading.Thread] = []

    def run(self, *, check_only: bool) -> None:
        previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
        for sig in previous:
            signal.signal(sig, self._on_signal)
        try:
            self._start()
            self._supervise(check_only=check_only)
        finally:
            self._stop()
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _on_signal(self, signum, frame) -> None:
        if self.stopping:  # a second Ctrl-C: no more waiting
            self._kill_all()
        self.stop_requested.set()

    def _kill_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)  # the worker's pool children too
                except ProcessLookupError:
                    pass

    def _start(self) -> None:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        # The demo's server may import from VAR_DIR/imports unless told otherwise.
        env.setdefault("IMPORT_LOCAL_ROOTS", str(Path(settings.VAR_DIR) / IMPORTS_DIR_NAME))
        manage = str(Path(settings.BASE_DIR) / "manage.py")
        commands = {
            "web": [sys.executable, manage, "runserver", self.addr, "--noreload"],
            # -B: the worker also runs Celery beat, whose reaper moves on jobs whose worker died.
            "worker": [sys.executable, "-m", "celery", "-A", "config", "worker", "-B", "-Q", "default,gpu",
                       "-l", "info", "--concurrency", "1"],
        }
        for name, argv in commands.items():
            proc = subprocess.Popen(argv, cwd=settings.BASE_DIR, env=env, stdin=subprocess.DEVNULL,
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, process_group=0)
            self.procs[name] = proc
            reader = threading.Thread(target=self._forward, args=(name, proc), daemon=True)
            reader.start()
            self.readers.append(reader)

    def _forward(self, name: str, proc: subprocess.Popen) -> None:
        for raw in proc.stdout:
            line = raw.decode("utf-8", errors="replace").rstrip("\n")
            if name == "worker" and line.rstrip().endswith(" ready."):
                self.worker_ready.set()
            with self.output_lock:
                self.command.stdout.write(f"[{name}] {line}")

    def _supervise(self, *, check_only: bool) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        web_status: int | None = None
        waiting = True  # until both are ready, or the deadline passes
        while not self.stop_requested.is_set():
            for name, proc in self.procs.items():
                if proc.poll() is not None:
                    other = "worker" if name == "web" else "web"
                    raise CommandError(f"The {name} process exited with code {proc.returncode}; stopped the {other}.",
                                       returncode=proc.returncode or 1)
            if waiting:
                if web_status is None or web_status >= 500:
                    web_status = _http_status(f"{self.base_url}/api/schema/")
                if web_status is not None and web_status < 500 and self.worker_ready.is_set():
                    waiting = False
                    if check_only:
                        self.say(f"Demo check passed: {self.base_url}/api/schema/ answered HTTP {web_status} "
                                 f"and the worker is ready.")
                        return
                    self.say(f"The demo is ready at {self.base_url}/ (logins above). Press Ctrl-C to stop.")
                elif time.monotonic() > deadline:
                    problem = (f"web answered {web_status or 'nothing'} on /api/schema/, "
                               f"worker ready: {'yes' if self.worker_ready.is_set() else 'no'}")
                    if check_only:
                        raise CommandError(f"Demo check failed after {READY_TIMEOUT_S} s: {problem}.")
                    self.say(f"Warning: the demo is not ready after {READY_TIMEOUT_S} s ({problem}).")
                    waiting = False
            self.stop_requested.wait(0.5)
        self.say("Stopping the web server and the worker...")

    def _stop(self) -> None:
        self.stopping = True
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for proc in self.procs.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self._kill_all()
                proc.wait()
        for reader in self.readers:
            reader.join(timeout=2)

    def say(self, message: str) -> None:
        with self.output_lock:
            self.command.stdout.write(message)


# --- helpers ---------------------------------------------------------------------------------

def _parse_addr(addr: str) -> tuple[str, int]:
    host, _, port = addr.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise CommandError(f"--addr must be HOST:PORT or PORT, not {addr!r}.")
    return host, int(port)


def _port_free(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _client_host(host: str) -> str:
    """Where a browser on this machine reaches a server listening on `host`."""
    if host in ("0.0.0.0", "::"):
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host


def _http_status(url: str) -> int | None:
    # No proxies: a proxy from the environment must not answer for a loopback server.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except (urllib.error.URLError, OSError):
        return None


def _read_credentials(path: Path) -> dict[str, str]:
    try:
        data = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return {}
    return {u["username"]: u["password"] for u in data.get("users", [])
            if isinstance(u, dict) and isinstance(u.get("username"), str) and isinstance(u.get("password"), str)}


def _write_credentials(path: Path, passwords: dict[str, str]) -> None:
    """Write the logins readable by the owner only (created 0600, never world-readable)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    roles = {d.username: d.role for d in DEMO_USERS}
    data = {"users": [{"username": name, "role": roles.get(name, ""), "password": password}
                      for name, password in passwords.items()]}
    partial = path.with_name(path.name + ".partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(data, handle, indent=2)
        handle.write("\n")
    os.chmod(partial, 0o600)
    os.replace(partial, path)


def _manifest_entries(manifest: Path, out_dir: Path) -> list[tuple[str, Path]] | None:
    """(prompt, image file) for each manifest line, or None when the manifest or a file is missing."""
    if not manifest.is_file():
        return None
    entries = []
    for line in manifest.read_text(encoding="utf-8").splitlines():
        if line.strip():
            obj = json.loads(line)
            path = out_dir / obj["image"]
            if not path.is_file():
                return None
            entries.append((obj["prompt"].strip(), path))
    return entries


def _file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
