"""Doctor's broker check: reachable, credentials accepted, and able to keep what it acknowledges."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import uuid

import aiomqtt

from relayd.daemon.config import MqttConfig
from relayd.doctor.results import CheckResult, fail, ok

# CONNACK return codes (MQTT 3.1.1 section 3.2.2.3) and their MQTT 5 reason codes.
_MQTT_BAD_CREDENTIALS = frozenset({4, 134})
_MQTT_NOT_AUTHORIZED = frozenset({5, 135})


def broker_client(mqtt: MqttConfig, relay_id: str, timeout_s: float) -> aiomqtt.Client:
    tls = (
        aiomqtt.TLSParameters(
            ca_certs=str(mqtt.ca_file) if mqtt.ca_file else None, cert_reqs=ssl.CERT_REQUIRED
        )
        if mqtt.tls
        else None
    )
    return aiomqtt.Client(
        mqtt.host,
        mqtt.port,
        username=mqtt.username,
        password=mqtt.password,
        # Never the relay's own client id: connecting with it would take over (and, with a clean
        # session, wipe) the persistent session that queues alerts for the relay.
        identifier=f"relayd-doctor-{relay_id}-{uuid.uuid4().hex[:8]}",
        clean_session=True,
        protocol=aiomqtt.ProtocolVersion.V311,
        tls_params=tls,
        timeout=timeout_s,
    )


async def check_broker(mqtt: MqttConfig, relay_id: str, timeout_s: float) -> CheckResult:
    where = f"{mqtt.host}:{mqtt.port}"
    scheme = "mqtts" if mqtt.tls else "mqtt"
    # A plain TCP connect first: aiomqtt folds every socket error into one MqttError, so the
    # difference between "refused" and "no answer" is only visible here.
    try:
        async with asyncio.timeout(timeout_s):
            _, writer = await asyncio.open_connection(mqtt.host, mqtt.port)
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    except ConnectionRefusedError:
        return fail(
            "broker",
            f"{where} connection refused",
            "is mosquitto running? systemctl status mosquitto; check [mqtt] url",
        )
    except TimeoutError:
        return fail(
            "broker",
            f"{where} no answer within {timeout_s:g} s",
            "wrong host or a firewall in between? check [mqtt] url and `ping`",
        )
    except OSError as exc:
        return fail("broker", f"{where} cannot connect: {exc.strerror or exc}", "check [mqtt] url")
    user = mqtt.username or "(anonymous)"
    try:
        async with asyncio.timeout(timeout_s + 1.0):
            async with broker_client(mqtt, relay_id, timeout_s):
                pass
    except aiomqtt.MqttCodeError as exc:
        code = exc.rc if isinstance(exc.rc, int) else getattr(exc.rc, "value", None)
        if code in _MQTT_BAD_CREDENTIALS or code in _MQTT_NOT_AUTHORIZED:
            what = "bad username or password" if code in _MQTT_BAD_CREDENTIALS else "not authorized"
            return fail(
                "broker",
                f"{where} refused user {user}: CONNACK {what}",
                "check [mqtt] username and password_file against the broker's password file "
                "(mosquitto_passwd), then sudo systemctl reload mosquitto",
            )
        return fail("broker", f"{where} refused the connection: {exc}", "read the broker's log")
    except (aiomqtt.MqttError, TimeoutError):
        hint = (
            "is it a TLS port? check ca_file and the certificate's host name"
            if mqtt.tls
            else "is it a TLS port (use mqtts://) or not an MQTT broker?"
        )
        return fail("broker", f"{where} accepted TCP but no MQTT CONNACK within {timeout_s:g} s", hint)
    return ok("broker", f"{scheme}://{where} connected as {user}")
