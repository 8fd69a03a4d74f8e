"""Response statuses and stream event types: the names the wire uses, as enums.

Both are ``StrEnum``: a member is the very string the API sends, so it compares equal to
it and serializes as it.
"""

from __future__ import annotations

from enum import StrEnum


class Status(StrEnum):
    QUEUED = "queued"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    INCOMPLETE = "incomplete"
    FAILED = "failed"
    CANCELLED = "cancelled"


class EventType(StrEnum):
    CREATED = "response.created"
    QUEUED = "response.queued"
    IN_PROGRESS = "response.in_progress"
    COMPLETED = "response.completed"
    INCOMPLETE = "response.incomplete"
    FAILED = "response.failed"
    CANCELLED = "response.cancelled"
    OUTPUT_ITEM_ADDED = "response.output_item.added"
    OUTPUT_ITEM_DONE = "response.output_item.done"
    CONTENT_PART_ADDED = "response.content_part.added"
    CONTENT_PART_DONE = "response.content_part.done"
    OUTPUT_TEXT_DELTA = "response.output_text.delta"
    OUTPUT_TEXT_DONE = "response.output_text.done"
    REASONING_TEXT_DELTA = "response.reasoning_text.delta"
    REASONING_TEXT_DONE = "response.reasoning_text.done"
    FUNCTION_CALL_ARGUMENTS_DELTA = "response.function_call_arguments.delta"
    FUNCTION_CALL_ARGUMENTS_DONE = "response.function_call_arguments.done"


# The codes a failed response's ``error`` may carry (OpenAI's ``ResponseErrorCode``); any
# other reason for a failure is reported as ``server_error``, its message saying what.
RESPONSE_ERROR_CODES = frozenset(
    {
        "server_error",
        "rate_limit_exceeded",
        "invalid_prompt",
        "data_residency_mismatch",
        "bio_policy",
        "vector_store_timeout",
        "invalid_image",
        "invalid_image_format",
        "invalid_base64_image",
        "invalid_image_url",
        "image_too_large",
        "image_too_small",
        "image_parse_error",
        "image_content_policy_violation",
        "invalid_image_mode",
        "image_file_too_large",
        "unsupported_image_media_type",
        "empty_image_file",
        "failed_to_download_image",
        "image_file_not_found",
    }
)

TERMINAL_STATUSES = frozenset({Status.COMPLETED, Status.INCOMPLETE, Status.FAILED, Status.CANCELLED})
TERMINAL_EVENTS = frozenset({EventType.COMPLETED, EventType.INCOMPLETE, EventType.FAILED, EventType.CANCELLED})

_TERMINAL_EVENT = {
    Status.COMPLETED: EventType.COMPLETED,
    Status.INCOMPLETE: EventType.INCOMPLETE,
    Status.CANCELLED: EventType.CANCELLED,
}


def terminal_event(status: str) -> EventType:
    """The event that ends a stream whose response settled on ``status``."""
    return _TERMINAL_EVENT.get(Status(status), EventType.FAILED)
