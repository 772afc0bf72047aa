"""The shared tables of PyROS, split by topic. Apps own the logic; this app owns the tables."""

from .alerts import Alert, AlertEvent, AlertStreamHealth, Strategy
from .devices import DeviceConfiguration
from .images import AnalysisResult, CalibrationMaster, Image
from .logs import Log
from .monitoring import DeviceStatus, ObservatoryState, WeatherReading
from .notifications import NotificationPreference
from .observatory import Detector, Dome, Filter, FilterWheel, Site, Telescope
from .programs import Allocation, Period, ScientificProgram
from .requests import Album, Plan, Request, Sequence
from .scheduling import Schedule, ScheduleHasSequences
from .users import User

__all__ = [
    "Alert", "AlertEvent", "AlertStreamHealth", "Strategy", "AnalysisResult", "CalibrationMaster", "Image", "Log", "NotificationPreference", "DeviceStatus",
    "ObservatoryState", "WeatherReading", "Detector", "Dome", "Filter", "FilterWheel", "Site", "Telescope",
    "Allocation", "Period", "ScientificProgram", "Album", "Plan", "Request", "Sequence", "Schedule",
    "ScheduleHasSequences", "User", "DeviceConfiguration",
]
