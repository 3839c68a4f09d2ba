# One image for the web process and the Celery workers.
#   docker build -t prefstudio .                               # web + CPU worker
#   docker build -t prefstudio:ml --build-arg INSTALL_EXTRAS=ml .  # GPU worker (torch, transformers, open_clip)
# INSTALL_EXTRAS takes extras of pyproject.toml's [project.optional-dependencies], comma-separated.
FROM python:3.11-slim

ARG INSTALL_EXTRAS=""
# pip reads these from the environment; an extra index serves CUDA builds of torch, for example.
ARG PIP_EXTRA_INDEX_URL=""

# PYTHONPATH: the sources in /app win over the installed copy, so BASE_DIR (and var/) is /app
# for manage.py, gunicorn and celery alike.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONPATH=/app \
    DJANGO_STATIC_ROOT=/app/var/static \
    DJANGO_MEDIA_ROOT=/app/var/media

RUN useradd --create-home --uid 1000 --user-group app
WORKDIR /app

# Dependencies first, from pyproject.toml alone, so a source change does not reinstall torch.
COPY pyproject.toml ./
RUN python -c "import os, tomllib; \
project = tomllib.load(open('pyproject.toml', 'rb'))['project']; \
extras = [e.strip() for e in os.environ.get('INSTALL_EXTRAS', '').split(',') if e.strip()]; \
unknown = [e for e in extras if e not in project.get('optional-dependencies', {})]; \
assert not unknown, f'INSTALL_EXTRAS names extras pyproject.toml does not define: {unknown}'; \
reqs = list(project['dependencies']) + [r for e in extras for r in project['optional-dependencies'][e]]; \
open('/tmp/requirements.txt', 'w').write('\n'.join(reqs) + '\n')" \
 && pip install -r /tmp/requirements.txt

COPY . .
RUN if [ -n "$INSTALL_EXTRAS" ]; then target=".[$INSTALL_EXTRAS]"; else target="."; fi \
 && pip install "$target" \
 && rm -rf build ./*.egg-info \
 && mkdir -p var/static var/media var/exports var/export-staging \
 && chown -R app:app var

USER app
EXPOSE 8000
CMD ["gunicorn", "config.wsgi:application", "--bind", "0.0.0.0:8000", "--workers", "3"]
