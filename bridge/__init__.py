"""onec-loyalty-bridge: bonus points and level discounts for 1C:Trade Management 11 stores.

Layout (arrows point inward): ``domain`` holds the pure rules; ``onec``, ``site``, ``notify`` and
``store`` are the edges; ``service`` wires them; ``runtime`` holds config, logging and the daemon
loop; ``cli`` maps commands and exceptions to exit codes.
"""

__version__ = "0.1.0"
