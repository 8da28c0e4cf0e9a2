VENV := .venv

# The README's two set-up commands. Each makes the virtual environment if needed.
.PHONY: demo test

demo:
	python3 -m venv $(VENV) && $(VENV)/bin/pip install -q -e . && $(VENV)/bin/svtree

test:
	python3 -m venv $(VENV) && $(VENV)/bin/pip install -q -e '.[test]' && $(VENV)/bin/python -m pytest -q
