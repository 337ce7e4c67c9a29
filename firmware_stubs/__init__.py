"""MicroPython firmware for the reference sensors; ``host`` runs it under CPython (see README.md)."""
