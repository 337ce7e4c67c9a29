import socket


def test_mosquitto_fixture_listens_and_restarts(mosquitto):
    with socket.create_connection((mosquitto.host, mosquitto.port), 1):
        pass
    mosquitto.stop()
    mosquitto.start()
    with socket.create_connection((mosquitto.host, mosquitto.port), 1):
        pass
