from __future__ import annotations

from app.core.errors import Conflict, NotFound


class SequenceNotFound(NotFound):
    """No sequence with that id in the caller's workspace."""

    code = "sequence_not_found"


class EnrollmentNotFound(NotFound):
    """No enrollment with that id in the caller's workspace."""

    code = "enrollment_not_found"


class EnrollmentExists(Conflict):
    """The lead is already active or paused in the sequence."""

    code = "enrollment_exists"
    title = "Already enrolled"


class LeadNotEnrollable(Conflict):
    """The lead's status is closed (converted, disqualified, junk or merged)."""

    code = "lead_not_enrollable"
    title = "Lead not enrollable"


class LeadUnsubscribed(Conflict):
    """The lead's email address unsubscribed from, or bounced, marketing email."""

    code = "lead_unsubscribed"
    title = "Lead unsubscribed"


class InvalidEnrollmentTransition(Conflict):
    """The enrollment cannot move from its status to the requested one."""

    code = "invalid_transition"
    title = "Invalid status transition"


class InvalidUnsubscribeToken(NotFound):
    """The unsubscribe token is malformed or its signature does not match."""

    code = "invalid_unsubscribe_token"


class HolidayCalendarNotFound(NotFound):
    """No holiday calendar with that id in the caller's workspace."""

    code = "holiday_calendar_not_found"


class HolidayCalendarInUse(Conflict):
    """Sequences still use the holiday calendar, so it cannot be deleted."""

    code = "holiday_calendar_in_use"
    title = "Holiday calendar in use"


class ReenrollmentNotAllowed(Conflict):
    """The sequence's re-enrollment policy forbids enrolling the lead again."""

    code = "reenrollment_not_allowed"
    title = "Re-enrollment not allowed"


class EnrollmentJobNotFound(NotFound):
    """No enrollment job with that id in the caller's workspace."""

    code = "enrollment_job_not_found"


class SequenceVersionNotFound(NotFound):
    """The sequence has no version with that number."""

    code = "sequence_version_not_found"


class EnrollmentNotRunning(Conflict):
    """The enrollment has ended, so it runs no more steps of any version."""

    code = "enrollment_not_running"
    title = "Enrollment not running"


class SequenceStepNotFound(NotFound):
    """The sequence version has no step at that position."""

    code = "sequence_step_not_found"


class SequenceArchived(Conflict):
    """The sequence is archived, so it takes no new enrollments."""

    code = "sequence_archived"
    title = "Sequence archived"
