"""Simulated residents: seeded daily life, incidents and device faults, and scenario replays.

The pure part (``simulate``) turns a seed, a period, residents, incidents and faults into the
ordered MQTT messages their homes send; ``runner`` replays them through the real hub.
"""

from simulators.life.faults import (
    BatteryDrain,
    BrokerRestartFault,
    DeviceDies,
    Duplicates,
    Fault,
    OutOfOrder,
    RadioDropout,
)
from simulators.life.incidents import (
    Absence,
    ButtonPress,
    Fall,
    Incident,
    LongBathroomVisit,
    MaybeFall,
    NightWandering,
    NotGettingUp,
)
from simulators.life.model import (
    HOME_DEVICES,
    AbsenceRegistered,
    BrokerRestart,
    Control,
    Delivery,
    DeviceEvent,
    DeviceSpec,
    Publish,
    ResidentSpec,
    Room,
    Routine,
)
from simulators.life.routine import DayPlan, day_events, plan_day, routine_events
from simulators.life.simulation import Simulation, resident_happenings, simulate

__all__ = [
    "HOME_DEVICES",
    "Absence",
    "AbsenceRegistered",
    "BatteryDrain",
    "BrokerRestart",
    "BrokerRestartFault",
    "ButtonPress",
    "Control",
    "DayPlan",
    "Delivery",
    "DeviceDies",
    "DeviceEvent",
    "DeviceSpec",
    "Duplicates",
    "Fall",
    "Fault",
    "Incident",
    "LongBathroomVisit",
    "MaybeFall",
    "NightWandering",
    "NotGettingUp",
    "OutOfOrder",
    "Publish",
    "RadioDropout",
    "ResidentSpec",
    "Room",
    "Routine",
    "Simulation",
    "day_events",
    "plan_day",
    "resident_happenings",
    "routine_events",
    "simulate",
]
