"""The station's seams to hardware and to the operating system.

Each seam is a small interface with a real implementation and, where the station can run
without the hardware, a fake in a module of its own, chosen only explicitly (rule 7,
docs/architecture.md): the dock (udev / simulated), mounting, the indicators (gpiozero pins /
mock pins), the station clock (adjtimex / simulated), systemd's notify socket and stop signals.
"""
