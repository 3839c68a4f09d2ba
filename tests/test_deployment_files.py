"""The deployment files (docker-compose.yml, Dockerfile, .env.example) agree with the project.

Docker does not run here, so these tests read the files: services and their wiring, the modules
and paths their commands name, and the environment variables that settings read.
"""
import json
import re
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
LONG_RUNNING_SERVERS = ("postgres", "redis", "minio", "web", "proxy")
APP_SERVICES = ("web", "worker", "beat", "gpu-worker")
NGINX_TEMPLATE = ROOT / "deploy" / "nginx" / "default.conf.template"

# env("X"), env.bool("X", ...), env.db("X"), os.environ.get("X"), os.getenv("X"), os.environ["X"]
_SETTINGS_ENV_READ = re.compile(
    r"""(?:\benv(?:\.\w+)?\(|\bos\.environ\.get\(|\bos\.getenv\(|\bos\.environ\[)\s*["']([A-Z][A-Z0-9_]*)["']"""
)
# ${VAR}, ${VAR:-default}, ${VAR:?message}; `$$` is compose's escape for a literal dollar.
_COMPOSE_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)")
# `VAR=` or `# VAR=` at the start of a line.
_ENV_EXAMPLE_ENTRY = re.compile(r"^#?\s*([A-Z][A-Z0-9_]*)=", re.MULTILINE)


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


@pytest.fixture(scope="module")
def services(compose) -> dict:
    return compose["services"]


@pytest.fixture(scope="module")
def pyproject() -> dict:
    with (ROOT / "pyproject.toml").open("rb") as f:
        return tomllib.load(f)


def command_text(service: dict) -> str:
    """The service's command as one string, whether written as a list or a string."""
    command = service.get("command", "")
    return " ".join(command) if isinstance(command, list) else command


def healthcheck_text(service: dict) -> str:
    test = service["healthcheck"]["test"]
    return " ".join(test) if isinstance(test, list) else test


def settings_env_names() -> set[str]:
    return set(_SETTINGS_ENV_READ.findall((ROOT / "config" / "settings.py").read_text()))


def compose_variable_names() -> set[str]:
    text = (ROOT / "docker-compose.yml").read_text().replace("$$", "")
    return set(_COMPOSE_VARIABLE.findall(text))


def env_example_names() -> set[str]:
    return set(_ENV_EXAMPLE_ENTRY.findall((ROOT / ".env.example").read_text()))


def mounted_files(service: dict) -> dict[str, Path]:
    """Files of this repository that the service mounts, by their path in the container."""
    mounts = {}
    for mount in service.get("volumes", []):
        source, target = mount.split(":")[:2]
        if source.startswith("./"):
            mounts[target] = ROOT / source
    return mounts


def script_text(service: dict) -> str:
    """The service's command and entrypoint, with the text of any script of this repository they run."""
    text = command_text(service) + " " + str(service.get("entrypoint", ""))
    return text + "".join(path.read_text() for target, path in mounted_files(service).items()
                          if target in text and path.is_file())


def bucket_init_service(services: dict) -> tuple[str, dict]:
    for name, service in services.items():
        if "mc mb" in script_text(service):
            return name, service
    pytest.fail("no service runs `mc mb` to create the bucket")


def nginx_location(name: str) -> str:
    """The body of `location <name> { ... }` in the proxy's template (no nested braces but one level)."""
    match = re.search(r"location\s+" + re.escape(name) + r"\s*\{((?:[^{}]|\{[^{}]*\})*)\}", NGINX_TEMPLATE.read_text())
    assert match, f"no `location {name}` in {NGINX_TEMPLATE.name}"
    return match.group(1)


def module_path_exists(dotted: str) -> bool:
    """Whether `a.b` names a module file a/b.py or a package a/b/ under the project root."""
    path = ROOT.joinpath(*dotted.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def test_compose_defines_postgres_redis_minio_web_and_both_workers(services):
    assert {"postgres", "redis", "minio", "web", "worker", "gpu-worker"} <= set(services)


def test_compose_has_a_one_shot_service_that_creates_the_configured_bucket_after_minio_is_healthy(services):
    _, init = bucket_init_service(services)
    assert init["environment"]["MINIO_BUCKET"] == "${AWS_STORAGE_BUCKET_NAME:-prefstudio}"
    assert 'mc mb --ignore-existing "local/$MINIO_BUCKET"' in script_text(init)
    assert init["depends_on"]["minio"]["condition"] == "service_healthy"
    assert init.get("restart", "no") == "no"


@pytest.mark.parametrize("name", LONG_RUNNING_SERVERS)
def test_each_long_running_server_has_a_healthcheck(services, name):
    assert healthcheck_text(services[name]).strip()


def test_postgres_and_redis_healthchecks_use_their_own_readiness_probes(services):
    assert "pg_isready" in healthcheck_text(services["postgres"])
    assert "redis-cli ping" in healthcheck_text(services["redis"])


def test_postgres_redis_and_minio_keep_their_data_in_named_volumes(compose, services):
    for name in ("postgres", "redis", "minio"):
        volume_names = {mount.split(":", 1)[0] for mount in services[name]["volumes"]}
        assert volume_names & set(compose["volumes"]), name


def test_web_and_the_worker_share_the_export_folder_so_local_exports_can_be_downloaded(compose, services):
    root = services["worker"]["environment"]["EXPORT_ROOT"]
    mounts = {name: {m.split(":", 1)[1]: m.split(":", 1)[0] for m in services[name].get("volumes", [])}
              for name in ("web", "worker")}
    assert root == services["web"]["environment"]["EXPORT_ROOT"]
    assert mounts["web"][root] == mounts["worker"][root] and mounts["web"][root] in compose["volumes"]


def test_web_migrates_collects_static_then_serves_config_wsgi_with_gunicorn(services):
    command = command_text(services["web"])
    migrate = command.index("manage.py migrate")
    collectstatic = command.index("manage.py collectstatic")
    gunicorn = command.index("gunicorn config.wsgi:application")
    assert migrate < collectstatic < gunicorn
    assert "--bind 0.0.0.0:8000" in command


def test_web_healthcheck_requests_healthz_with_python_urllib(services):
    check = healthcheck_text(services["web"])
    assert "urllib" in check and "/healthz/" in check


def test_web_waits_for_healthy_postgres_and_redis_and_a_created_bucket(services):
    depends_on = services["web"]["depends_on"]
    init_name, _ = bucket_init_service(services)
    assert depends_on["postgres"]["condition"] == "service_healthy"
    assert depends_on["redis"]["condition"] == "service_healthy"
    assert depends_on[init_name]["condition"] == "service_completed_successfully"


def test_cpu_worker_consumes_only_the_default_queue(services):
    command = services["worker"]["command"]
    assert command[:4] == ["celery", "-A", "config", "worker"]
    assert command[command.index("-Q") + 1] == "default"


def test_gpu_worker_consumes_the_gpu_queue_one_task_at_a_time(services):
    command = services["gpu-worker"]["command"]
    assert command[:4] == ["celery", "-A", "config", "worker"]
    assert command[command.index("-Q") + 1] == "gpu"
    assert command[command.index("--prefetch-multiplier") + 1] == "1"
    assert command[command.index("--concurrency") + 1] == "1"


def test_gpu_worker_reserves_an_nvidia_gpu(services):
    devices = services["gpu-worker"]["deploy"]["resources"]["reservations"]["devices"]
    assert any(d["driver"] == "nvidia" and "gpu" in d["capabilities"] and d.get("count") for d in devices)


def test_gpu_worker_image_is_built_with_an_extra_that_pyproject_defines(services, pyproject):
    extras = services["gpu-worker"]["build"]["args"]["INSTALL_EXTRAS"].split(",")
    assert "ml" in extras
    assert set(extras) <= set(pyproject["project"]["optional-dependencies"])


def test_app_services_build_from_the_repository_dockerfile(services):
    for name in ("web", "worker", "gpu-worker"):
        build = services[name]["build"]
        assert build["context"] == "." and (ROOT / build.get("dockerfile", "Dockerfile")).is_file(), name


def test_app_services_read_an_optional_env_file_and_point_at_the_compose_services(services):
    for name in ("web", "worker", "gpu-worker"):
        service = services[name]
        assert {"path": ".env", "required": False} in service["env_file"], name
        environment = service["environment"]
        assert environment["DJANGO_DEBUG"] == "false"
        assert environment["DJANGO_SECRET_KEY"].startswith("${DJANGO_SECRET_KEY:?")
        assert environment["DATABASE_URL"].startswith("postgres://") and "@postgres:5432/" in environment["DATABASE_URL"]
        assert environment["CELERY_BROKER_URL"] == "redis://redis:6379/0"
        assert environment["STORAGE_BACKEND"] == "s3"
        assert environment["AWS_S3_ENDPOINT_URL"] == "http://minio:9000"


def test_the_modules_and_files_that_compose_commands_name_exist():
    assert (ROOT / "manage.py").is_file()
    assert module_path_exists("config.wsgi")
    assert module_path_exists("config.celery")
    assert (ROOT / "Dockerfile").is_file()


def test_dockerfile_installs_extras_chosen_by_the_install_extras_build_arg():
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim\b", dockerfile, re.MULTILINE)
    assert re.search(r'^ARG INSTALL_EXTRAS=""$', dockerfile, re.MULTILINE)
    assert ".[$INSTALL_EXTRAS]" in dockerfile
    assert re.search(r"^EXPOSE 8000$", dockerfile, re.MULTILINE)


def test_dockerfile_runs_as_a_non_root_user():
    users = re.findall(r"^USER (\S+)$", (ROOT / "Dockerfile").read_text(), re.MULTILINE)
    assert users and users[-1] not in {"root", "0"}


def test_dockerignore_keeps_local_state_and_secrets_out_of_the_image():
    ignored = set((ROOT / ".dockerignore").read_text().split())
    assert {".venv", "var", ".git", ".env", "bench/out"} <= ignored
    assert "__pycache__" in ignored or "**/__pycache__" in ignored


def test_settings_env_name_extraction_finds_the_names_settings_is_known_to_read():
    # Guards the regex: if it stopped matching, the documentation test below would pass vacuously.
    assert {"DJANGO_SECRET_KEY", "DJANGO_DEBUG", "DATABASE_URL", "CELERY_BROKER_URL"} <= settings_env_names()


def test_every_environment_variable_settings_reads_is_documented_in_env_example():
    assert settings_env_names() - env_example_names() == set()


def test_every_variable_compose_interpolates_is_documented_in_env_example():
    assert compose_variable_names() - env_example_names() == set()


def test_compose_runs_exactly_one_celery_beat_for_the_job_reaper(services):
    beats = [name for name, service in services.items() if service.get("command", [])[:4] == ["celery", "-A",
                                                                                                "config", "beat"]]
    assert beats == ["beat"]


# --- safe by default -------------------------------------------------------------------------

def test_only_the_proxy_publishes_a_port(services):
    published = {name for name, service in services.items() if service.get("ports")}
    assert published == {"proxy"}
    assert services["proxy"]["ports"] == ["${PREFSTUDIO_HTTP_PORT:-8000}:80"]


def test_the_proxy_passes_requests_to_web_and_starts_once_web_is_healthy(services):
    assert "proxy_pass http://web:8000;" in nginx_location("/")
    assert services["proxy"]["depends_on"]["web"]["condition"] == "service_healthy"
    assert mounted_files(services["proxy"])["/etc/nginx/templates/default.conf.template"] == NGINX_TEMPLATE
    assert NGINX_TEMPLATE.is_file()


def test_every_password_and_secret_compose_interpolates_is_required_without_a_default():
    text = (ROOT / "docker-compose.yml").read_text().replace("$$", "")
    uses = re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)([^}]*)\}", text)
    secrets = [(name, rest) for name, rest in uses if re.search("PASSWORD|SECRET", name)]
    assert {"POSTGRES_PASSWORD", "MINIO_ROOT_PASSWORD", "MINIO_APP_PASSWORD", "DJANGO_SECRET_KEY"} <= {n for n, _ in secrets}
    assert [(name, rest) for name, rest in secrets if not rest.startswith(":?")] == []


def test_no_literal_password_is_written_in_compose(services):
    for name, service in services.items():
        for key, value in (service.get("environment") or {}).items():
            if re.search("PASSWORD|SECRET", key):
                assert str(value).startswith("${") and ":?" in str(value), (name, key)
        database_url = (service.get("environment") or {}).get("DATABASE_URL", "")
        if database_url:
            assert ":${POSTGRES_PASSWORD:?" in database_url, name


def test_only_minio_and_its_init_service_see_the_minio_root_credentials(services):
    for name, service in services.items():
        if name not in ("minio", "minio-init"):
            assert "MINIO_ROOT" not in json.dumps(service), name


@pytest.mark.parametrize("name", APP_SERVICES)
def test_app_services_sign_in_to_minio_as_the_app_user_that_minio_init_creates(services, name):
    _, init = bucket_init_service(services)
    environment = services[name]["environment"]
    assert environment["AWS_ACCESS_KEY_ID"] == init["environment"]["MINIO_APP_USER"] == "${MINIO_APP_USER:-prefstudio-app}"
    assert environment["AWS_SECRET_ACCESS_KEY"] == init["environment"]["MINIO_APP_PASSWORD"]
    assert environment["AWS_STORAGE_BUCKET_NAME"] == init["environment"]["MINIO_BUCKET"]


def test_minio_init_attaches_to_the_app_user_a_policy_limited_to_the_bucket(services):
    _, init = bucket_init_service(services)
    script = script_text(init)
    policy_text = re.search(r"<<POLICY\n(.*?)\nPOLICY\n", script, re.DOTALL).group(1)
    policy = json.loads(policy_text.replace("${MINIO_BUCKET}", "prefstudio"))
    resources = {r for statement in policy["Statement"] for r in statement["Resource"]}
    actions = {a for statement in policy["Statement"] for a in statement["Action"]}

    assert {s["Effect"] for s in policy["Statement"]} == {"Allow"}
    assert resources == {"arn:aws:s3:::prefstudio", "arn:aws:s3:::prefstudio/*"}
    assert all(a.startswith("s3:") and "*" not in a for a in actions)
    assert "mc admin policy create local" in script
    assert 'mc admin user add local "$MINIO_APP_USER" "$MINIO_APP_PASSWORD"' in script
    assert 'mc admin policy attach local "$policy" --user "$MINIO_APP_USER"' in script


def test_minio_init_script_is_valid_shell_that_stops_at_the_first_failure(services):
    _, init = bucket_init_service(services)
    script = next(path for path in mounted_files(init).values() if path.suffix == ".sh")
    assert subprocess.run(["sh", "-n", str(script)], capture_output=True).returncode == 0
    assert "set -eu" in script.read_text()


def test_proxy_headers_are_trusted_by_web_alone_and_the_proxy_sets_them_itself(services):
    trusting = {name for name, service in services.items()
                if (service.get("environment") or {}).get("DJANGO_TRUST_PROXY_HEADERS") == "true"}
    assert trusting == {"web"} and not services["web"].get("ports")
    location = nginx_location("/")
    for header in ("X-Forwarded-Proto", "X-Forwarded-Host", "X-Forwarded-For"):
        value = re.search(rf"proxy_set_header {header} (\S+);", location).group(1)
        assert not value.startswith("$http_x_forwarded"), f"{header} copied from the request"
    assert "proxy_set_header X-Forwarded-Proto $prefstudio_scheme;" in location
    assert 'map "${PREFSTUDIO_PUBLIC_ORIGIN}" $prefstudio_scheme' in NGINX_TEMPLATE.read_text()
    assert services["proxy"]["environment"]["PREFSTUDIO_PUBLIC_ORIGIN"].startswith("${PREFSTUDIO_PUBLIC_ORIGIN:?")


def test_settings_trust_proxy_headers_only_when_told():
    settings_text = (ROOT / "config" / "settings.py").read_text()
    block = settings_text.split("if TRUST_PROXY_HEADERS:", 1)[1].split("\n\n", 1)[0]
    assert "SECURE_PROXY_SSL_HEADER" in block and "USE_X_FORWARDED_HOST" in block
    assert settings_text.count("SECURE_PROXY_SSL_HEADER =") == 1


def test_nginx_has_an_internal_location_on_the_media_volume_for_the_prefix_web_redirects_to(compose, services):
    prefix = services["web"]["environment"]["DJANGO_MEDIA_INTERNAL_REDIRECT_PREFIX"]
    location = nginx_location(prefix)
    alias = re.search(r"alias (\S+);", location).group(1)
    proxy_mounts = {m.split(":")[1].rstrip("/"): m.split(":")[0] for m in services["proxy"]["volumes"]}
    web_mounts = {m.split(":")[1]: m.split(":")[0] for m in services["web"]["volumes"]}
    media_root = re.search(r"DJANGO_MEDIA_ROOT=(\S+)", (ROOT / "Dockerfile").read_text()).group(1)

    assert prefix == "/protected-media/" and "internal;" in location
    assert proxy_mounts[alias.rstrip("/")] == web_mounts[media_root] == "media" and "media" in compose["volumes"]
    assert services["proxy"]["volumes"][[m.split(":")[0] for m in services["proxy"]["volumes"]].index("media")].endswith(":ro")


def test_nginx_sends_signed_s3_urls_of_the_bucket_to_minio_for_reads_only(services):
    location = nginx_location("/${PREFSTUDIO_BUCKET}/")
    assert services["proxy"]["environment"]["PREFSTUDIO_BUCKET"] == "${AWS_STORAGE_BUCKET_NAME:-prefstudio}"
    assert "proxy_pass http://minio:9000;" in location
    assert "proxy_set_header Host $http_host;" in location  # the host the URL was signed for
    assert "limit_except GET HEAD { deny all; }" in location
    for name in APP_SERVICES:
        assert services[name]["environment"]["AWS_S3_PUBLIC_ENDPOINT_URL"] == \
            services["proxy"]["environment"]["PREFSTUDIO_PUBLIC_ORIGIN"]
