"""Drives the broker with Eclipse Paho (Python) over WebSocket: subscribe, publish QoS 0/1/2, retained.

Usage: paho_roundtrip.py HOST PORT PROTOCOL(4|5) TOPIC_ROOT
Prints one JSON line with what the subscriber received.
"""
import json
import sys
import threading
import time

import paho.mqtt.client as mqtt

host, port, version, root = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
protocol = mqtt.MQTTv5 if version == 5 else mqtt.MQTTv311


def make(client_id):
    client = mqtt.Client(client_id=client_id, protocol=protocol, transport="websockets")
    client.ws_set_options(path="/mqtt")
    return client


received = []
got_all = threading.Event()
connacks = {}


def on_connect(client, userdata, flags, rc, properties=None):
    connacks[client._client_id.decode()] = int(rc) if not hasattr(rc, "value") else rc.value


def on_message(client, userdata, msg):
    received.append({"topic": msg.topic, "payload": msg.payload.decode(), "qos": msg.qos, "retain": bool(msg.retain)})
    if len(received) >= 4:
        got_all.set()


publisher = make(f"paho-pub-{version}")
publisher.on_connect = on_connect
publisher.connect(host, port, keepalive=30)
publisher.loop_start()
time.sleep(0.5)
info = publisher.publish(f"{root}/retained", "kept", qos=1, retain=True)
info.wait_for_publish(5)

subscriber = make(f"paho-sub-{version}")
subscriber.on_connect = on_connect
subscriber.on_message = on_message
subscribed = threading.Event()
subscriber.on_subscribe = lambda *args: subscribed.set()
subscriber.connect(host, port, keepalive=30)
subscriber.loop_start()
time.sleep(0.5)
subscriber.subscribe(f"{root}/#", qos=2)
subscribed.wait(5)
time.sleep(0.3)
for qos in (0, 1, 2):
    publisher.publish(f"{root}/q{qos}", f"m{qos}", qos=qos).wait_for_publish(5)
got_all.wait(5)
subscriber.loop_stop()
publisher.loop_stop()
print(json.dumps({"connacks": connacks, "received": received}))
