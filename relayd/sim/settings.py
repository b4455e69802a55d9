"""What a simulated radio holds about itself and lets its client read and write (AdminModule).

`RadioSettings` is one radio's owner, channels, config and module config, built from the scenario
with the defaults firmware 2.8.0 reports, and changed only by the admin messages of its own client
(the official client's --set/--configure/--export-config, hardware/apply-profile.sh). The radio
(relayd.sim.firmware.SimRadio) streams them in the want_config handshake and wraps the answers to
admin requests in packets; this module does neither.
"""

from __future__ import annotations

from typing import Any

from meshtastic.protobuf import admin_pb2, channel_pb2, config_pb2, mesh_pb2, module_config_pb2

from relayd.meshapi.packets import node_id
from relayd.sim.scenario import NodeSpec, Scenario

CANNED_MESSAGES_DEFAULT = "Hi|Bye|Yes|No|Ok"
# A radio has 8 channel slots, the unused ones DISABLED (MAX_NUM_CHANNELS).
MAX_CHANNELS = 8
# AdminMessage.ModuleConfigType name -> ModuleConfig field.
_MODULE_SECTION = {
    "MQTT_CONFIG": "mqtt",
    "SERIAL_CONFIG": "serial",
    "EXTNOTIF_CONFIG": "external_notification",
    "STOREFORWARD_CONFIG": "store_forward",
    "RANGETEST_CONFIG": "range_test",
    "TELEMETRY_CONFIG": "telemetry",
    "CANNEDMSG_CONFIG": "canned_message",
    "AUDIO_CONFIG": "audio",
    "REMOTEHARDWARE_CONFIG": "remote_hardware",
    "NEIGHBORINFO_CONFIG": "neighbor_info",
    "AMBIENTLIGHTING_CONFIG": "ambient_lighting",
    "DETECTIONSENSOR_CONFIG": "detection_sensor",
    "PAXCOUNTER_CONFIG": "paxcounter",
    "STATUSMESSAGE_CONFIG": "statusmessage",
    "TRAFFICMANAGEMENT_CONFIG": "traffic_management",
    "TAK_CONFIG": "tak",
}


def user_for(spec: NodeSpec) -> Any:
    """The User a radio reports for `spec` (its own owner, or another node in its node DB)."""
    user = mesh_pb2.User()
    user.id = node_id(spec.num)
    user.long_name = spec.long_name
    user.short_name = spec.short_name
    user.hw_model = mesh_pb2.HardwareModel.PORTDUINO
    user.role = config_pb2.Config.DeviceConfig.Role.CLIENT
    return user


def _channel_slots(scenario: Scenario) -> list[Any]:
    slots = []
    for i in range(MAX_CHANNELS):
        ch = channel_pb2.Channel()
        ch.index = i
        if i < len(scenario.channels):
            spec = scenario.channels[i]
            ch.role = channel_pb2.Channel.Role.PRIMARY if i == 0 else channel_pb2.Channel.Role.SECONDARY
            ch.settings.name = spec.name
            ch.settings.psk = spec.psk
        else:
            ch.role = channel_pb2.Channel.Role.DISABLED
        slots.append(ch)
    return slots


def _config_sections(spec: NodeSpec, sc: Scenario) -> list[Any]:
    cfg = config_pb2.Config
    sections = []
    c = cfg()
    c.device.role = cfg.DeviceConfig.Role.CLIENT
    c.device.node_info_broadcast_secs = 10800
    sections.append(c)
    c = cfg()
    c.position.position_broadcast_secs = 900
    c.position.gps_mode = cfg.PositionConfig.GpsMode.NOT_PRESENT
    sections.append(c)
    c = cfg()
    c.power.ls_secs = 300  # PhoneAPI always reports default_ls_secs
    sections.append(c)
    c = cfg()
    c.network.wifi_enabled = spec.tcp_port is not None
    sections.append(c)
    c = cfg()
    c.display.screen_on_secs = 600
    sections.append(c)
    c = cfg()
    c.lora.use_preset = True
    c.lora.modem_preset = cfg.LoRaConfig.ModemPreset.Value(sc.preset.name)
    c.lora.region = cfg.LoRaConfig.RegionCode.Value(sc.region)
    c.lora.hop_limit = sc.hop_limit
    c.lora.tx_enabled = True
    c.lora.tx_power = 27
    c.lora.sx126x_rx_boosted_gain = True
    sections.append(c)
    c = cfg()
    c.bluetooth.enabled = False
    c.bluetooth.mode = cfg.BluetoothConfig.PairingMode.RANDOM_PIN
    sections.append(c)
    c = cfg()
    c.security.public_key = spec.num.to_bytes(4, "big") * 8
    c.security.serial_enabled = True
    sections.append(c)
    c = cfg()
    c.sessionkey.SetInParent()
    sections.append(c)
    c = cfg()
    c.device_ui.screen_brightness = 153
    c.device_ui.screen_timeout = 30
    sections.append(c)
    return sections


def _module_sections() -> list[Any]:
    module_cls = module_config_pb2.ModuleConfig
    names = (
        "mqtt",
        "serial",
        "external_notification",
        "store_forward",
        "range_test",
        "telemetry",
        "canned_message",
        "audio",
        "remote_hardware",
        "neighbor_info",
        "ambient_lighting",
        "detection_sensor",
        "paxcounter",
        "statusmessage",
        "traffic_management",
        "tak",
    )
    out = []
    for n in names:
        m = module_cls()
        getattr(m, n).SetInParent()
        if n == "external_notification":
            # A text holding BEL rings the bell (ExternalNotificationModule, alert_bell).
            m.external_notification.enabled = True
            m.external_notification.alert_bell = True
            m.external_notification.alert_message = False
            m.external_notification.output_ms = 1000
        out.append(m)
    return out


class RadioSettings:
    """One radio's settings. Built from the scenario; `set_*` admin messages change this radio only."""

    def __init__(self, spec: NodeSpec, scenario: Scenario) -> None:
        self.owner = user_for(spec)
        self.config = {c.WhichOneof("payload_variant"): c for c in _config_sections(spec, scenario)}
        self.module_config = {m.WhichOneof("payload_variant"): m for m in _module_sections()}
        self.channels = _channel_slots(scenario)
        self.canned_messages = CANNED_MESSAGES_DEFAULT
        self.ringtone = ""
        self.edit_open = False  # between begin_edit_settings and commit_edit_settings

    def channels_in_use(self) -> list[Any]:
        return [c for c in self.channels if c.role != channel_pb2.Channel.Role.DISABLED]

    @property
    def hop_limit(self) -> int:
        """config.lora.hop_limit (the scenario's, unless an admin message changed it)."""
        return int(self.config["lora"].lora.hop_limit)

    def admin(self, which: str | None, req: Any) -> Any:
        """Answer a get_* request or apply a set_* / edit one: the AdminMessage to send back
        (empty for a set, and for anything this model does not handle, which is ignored). The
        device metadata is the radio's, not a setting: SimRadio answers that one."""
        resp = admin_pb2.AdminMessage()
        cfg_types = admin_pb2.AdminMessage.ConfigType
        mod_types = admin_pb2.AdminMessage.ModuleConfigType
        if which == "get_owner_request":
            resp.get_owner_response.CopyFrom(self.owner)
        elif which == "get_config_request":
            name = cfg_types.Name(req.get_config_request).removesuffix("_CONFIG").lower()
            name = "device_ui" if name == "deviceui" else name
            section = self.config.get(name)
            if section is not None:
                resp.get_config_response.CopyFrom(section)
        elif which == "get_module_config_request":
            name = _MODULE_SECTION.get(mod_types.Name(req.get_module_config_request), "")
            module = self.module_config.get(name)
            if module is not None:
                resp.get_module_config_response.CopyFrom(module)
        elif which == "get_channel_request":
            index = req.get_channel_request - 1
            if 0 <= index < len(self.channels):
                resp.get_channel_response.CopyFrom(self.channels[index])
        elif which == "get_canned_message_module_messages_request":
            resp.get_canned_message_module_messages_response = self.canned_messages
        elif which == "get_ringtone_request":
            resp.get_ringtone_response = self.ringtone
        elif which == "set_owner":
            if req.set_owner.long_name:
                self.owner.long_name = req.set_owner.long_name
            if req.set_owner.short_name:
                self.owner.short_name = req.set_owner.short_name
        elif which == "set_config":
            name = req.set_config.WhichOneof("payload_variant")
            if name is not None:
                self.config[name] = config_pb2.Config()
                self.config[name].CopyFrom(req.set_config)
        elif which == "set_module_config":
            name = req.set_module_config.WhichOneof("payload_variant")
            if name is not None:
                self.module_config[name] = module_config_pb2.ModuleConfig()
                self.module_config[name].CopyFrom(req.set_module_config)
        elif which == "set_channel":
            ch = req.set_channel
            if 0 <= ch.index < len(self.channels):
                self.channels[ch.index].CopyFrom(ch)
        elif which == "set_canned_message_module_messages":
            self.canned_messages = req.set_canned_message_module_messages
        elif which == "set_ringtone_message":
            self.ringtone = req.set_ringtone_message
        elif which == "begin_edit_settings":
            self.edit_open = True
        elif which == "commit_edit_settings":
            self.edit_open = False
        return resp
