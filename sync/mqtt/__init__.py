"""The station's MQTT side: the link (paho behind a small interface) and the outbox publisher.

``link``: :class:`~sync.mqtt.link.Link`, :class:`~sync.mqtt.link.MqttLink`. ``publisher``:
:class:`~sync.mqtt.publisher.OutboxPublisher`. Run a station's publisher on its own with
``python -m sync.mqtt --home DIR --config FILE``.
"""
