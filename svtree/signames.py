"""Signal names <-> numbers. A leaf: stdlib only."""

from __future__ import annotations

import signal


def parse_signal(value: "str | int") -> int:
    """Parse a signal given as a name with or without SIG ("TERM", "SIGTERM") or a number.

    Raises ValueError with a message that says what is accepted.
    """
    if isinstance(value, bool):
        raise ValueError(f"not a signal: {value!r}")
    if isinstance(value, int):
        number = value
    else:
        text = value.strip()
        if text.isdigit():
            number = int(text)
        else:
            name = text.upper()
            if not name.startswith("SIG"):
                name = "SIG" + name
            member = getattr(signal.Signals, name, None) if name.isidentifier() else None
            if not isinstance(member, signal.Signals):
                raise ValueError(f'unknown signal "{value}" (use a name like TERM, SIGHUP, or a number)')
            return int(member)
    if number not in signal.valid_signals() or number == 0:
        raise ValueError(f"no signal numbered {number}")
    return number


def signal_name(number: int) -> str:
    """Short name without SIG ("TERM"), or the number as text for unnamed ones."""
    try:
        return signal.Signals(number).name[3:]
    except ValueError:
        return str(number)
