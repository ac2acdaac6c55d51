"""Devices: the catalogue of device types, payload codecs per protocol, provisioning."""
