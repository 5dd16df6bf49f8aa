# The README's two commands: `make demo` (the live ROS 2 walking demo) and `make test`. Both set up .venv on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.setup-done

.PHONY: setup demo test clean

setup: $(STAMP)

$(STAMP): requirements.txt setup.py package.xml
	@# open3d needs libusb at import time; Debian's package where it is missing.
	@ldconfig -p | grep -q libusb-1.0.so.0 || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq libusb-1.0-0; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	touch $(STAMP)

demo: setup
	$(VENV)/bin/posesdf demo --out demo_out

test: setup
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q test

clean:
	rm -rf $(VENV) build install log preview demo_out
