# Two commands do all the set-up on a fresh machine (a virtual environment in the checkout):
#   make serve   - install, then start the server on sample-data/ at http://127.0.0.1:8000 (this machine only)
#   make test    - install, then lint and run the test suite
# Extra server settings: make serve CONF="--conf modality mr --conf labels tumor,edema"
# On a network (login needed; see README "Deploying on a network"):
#   make serve HOST=0.0.0.0 CONF="--conf users /srv/tumor/users.json" SSL="--ssl_keyfile key.pem --ssl_certfile cert.pem"

VENV := .venv
PYTHON := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed
STUDIES ?= sample-data
HOST ?= 127.0.0.1
PORT ?= 8000
CONF ?=
SSL ?=

.PHONY: install serve test

$(INSTALLED): setup.cfg pyproject.toml
	python3 -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --upgrade pip
	$(PYTHON) -m pip install --quiet -e ".[test]"
	touch $(INSTALLED)

install: $(INSTALLED)

serve: $(INSTALLED)
	PATH="$(abspath $(VENV))/bin:$$PATH" monailabel start_server --app apps/tumor --studies $(STUDIES) \
		--host $(HOST) --port $(PORT) $(SSL) $(CONF)

test: $(INSTALLED)
	@# A real PACS for the DICOMweb tests, where packages can be installed (root, Debian); they skip otherwise.
	@command -v Orthanc >/dev/null 2>&1 || ( export DEBIAN_FRONTEND=noninteractive; \
		{ apt-get install -y -q orthanc orthanc-dicomweb >/dev/null 2>&1 || { apt-get update -q >/dev/null 2>&1 && \
		apt-get install -y -q orthanc orthanc-dicomweb >/dev/null 2>&1; }; } && echo "Installed Orthanc for the DICOMweb tests" ) || \
		echo "Orthanc is not installed and cannot be: the DICOMweb tests will skip"
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PYTHON) -m pytest
