"""config/fastdds.xml: large organised clouds between two processes over real Fast DDS.

The publisher and the subscriber each run in a fresh process with the
shipped profile (as a camera driver and the canonicaliser would), so that
nothing this test process did with DDS before changes what is measured.
"""
from __future__ import annotations

import os
import xml.etree.ElementTree as ET

from posesdf_ros.ros.transport import PROFILE_ENV, exchange_clouds, fastdds_profile_path

DOMAIN = 61 + os.getpid() % 30
NS = {"f": "http://www.eprosima.com/XMLSchemas/fastRTPS_Profiles"}
CLOUD_1280x720 = 1280 * 720 * 16


def test_profile_replaces_builtin_transports_with_a_large_shm_segment():
    root = ET.parse(fastdds_profile_path()).getroot()
    participant = root.find("f:profiles/f:participant[@is_default_profile='true']", NS)
    assert participant is not None
    assert participant.findtext("f:rtps/f:useBuiltinTransports", namespaces=NS) == "false"
    used = {t.text for t in participant.findall("f:rtps/f:userTransports/f:transport_id", NS)}
    kinds = {d.findtext("f:transport_id", namespaces=NS): d for d in
             root.findall("f:profiles/f:transport_descriptors/f:transport_descriptor", NS)}
    assert used <= kinds.keys()
    assert {kinds[t].findtext("f:type", namespaces=NS) for t in used} == {"SHM", "UDPv4"}
    shm = next(kinds[t] for t in used if kinds[t].findtext("f:type", namespaces=NS) == "SHM")
    assert int(shm.findtext("f:segment_size", namespaces=NS)) >= 2 * CLOUD_1280x720
    assert PROFILE_ENV == "FASTRTPS_DEFAULT_PROFILES_FILE"  # Fast DDS 2.x, as in Jazzy


def test_30_organised_1280x720_clouds_at_15_hz_arrive_between_processes():
    result = exchange_clouds(1280, 720, count=30, rate_hz=15.0, profile=fastdds_profile_path(), reliable=False,
                             domain_id=DOMAIN, timeout_s=25.0)
    assert result["bytes_per_cloud"] == CLOUD_1280x720
    assert result["sent"] == 30
    assert result["bad"] == 0
    assert result["received"] == 30, result
    assert result["lost"] == 0
