"""The bay LEDs and the station buzzer (docs/indicators.md).

``patterns``: what each state looks like (data; no hardware). ``devices``: the LEDs and the
buzzer on gpiozero. ``pins``: the pin-factory seam (lgpio on a Pi). ``mock``: gpiozero's mock
pins, recorded to a file, for `recdock run --simulate` only.
"""
