"""Routes of batch enrollment and enrollment jobs."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response, status

from app.core import ids
from app.core.auth import Principal, require
from app.core.openapi import Problem, problem_responses
from app.core.paths import parse_path_id
from app.core.routing import UnitOfWorkRoute
from app.nurture.enrolment_batch import enroll_batch
from app.nurture.enrolment_jobs import enrollment_job_service
from app.nurture.enrolment_schemas import (
    EnrollmentBatchCreate,
    EnrollmentBatchItem,
    EnrollmentBatchResult,
    EnrollmentJob,
    EnrollmentJobCreate,
)

router = APIRouter(route_class=UnitOfWorkRoute)


@router.post(
    "/sequences/{sequence_id}/enrollments/batch",
    tags=["enrollments"],
    operation_id="enrollments_batch_create",
    summary="Enroll leads in a batch",
    response_model=EnrollmentBatchResult,
    responses=problem_responses(403, 404, 409, 413, 415),
)
async def batch_create_enrollments(
    request: Request,
    sequence_id: str,
    payload: EnrollmentBatchCreate,
    principal: Principal = Depends(require("nurture:write")),
) -> EnrollmentBatchResult:
    """Enroll up to 1,000 leads, with a created, skipped, invalid or duplicate result each."""
    results = await enroll_batch(
        request.state.session,
        principal,
        parse_path_id("sequence", sequence_id, "sequence"),
        payload,
    )
    items = [
        EnrollmentBatchItem(
            index=result.index,
            lead_id=result.lead_id,
            status=result.status,
            enrollment=result.enrollment,
            duplicate_of_index=result.duplicate_of_index,
            error=Problem.model_validate(result.error) if result.error else None,
        )
        for result in results
    ]
    return EnrollmentBatchResult(
        created=sum(item.status == "created" for item in items),
        skipped=sum(item.status == "skipped" for item in items),
        invalid=sum(item.status == "invalid" for item in items),
        duplicates=sum(item.status == "duplicate" for item in items),
        items=items,
    )


@router.post(
    "/sequences/{sequence_id}/enrollment-jobs",
    tags=["enrollments"],
    operation_id="enrollment_jobs_create",
    summary="Enroll the leads that match a filter",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=EnrollmentJob,
    responses=problem_responses(403, 404, 409, 413, 415),
)
async def create_enrollment_job(
    request: Request,
    response: Response,
    sequence_id: str,
    payload: EnrollmentJobCreate,
    principal: Principal = Depends(require("nurture:write")),
) -> EnrollmentJob:
    """Queue a job that enrolls every lead matching the filter, each under the usual rules."""
    job = await enrollment_job_service.create(
        request.state.session,
        principal,
        parse_path_id("sequence", sequence_id, "sequence"),
        payload,
    )
    response.headers["Location"] = (
        f"/v1/enrollment-jobs/{ids.encode('enrollment_job', job.id)}"
    )
    return job


@router.get(
    "/enrollment-jobs/{enrollment_job_id}",
    tags=["enrollments"],
    operation_id="enrollment_jobs_get",
    summary="Get an enrollment job",
    response_model=EnrollmentJob,
    responses=problem_responses(403, 404),
)
async def get_enrollment_job(
    request: Request,
    enrollment_job_id: str,
    principal: Principal = Depends(require("nurture:read")),
) -> EnrollmentJob:
    """Fetch one enrollment job with its progress and counts."""
    return await enrollment_job_service.get(
        request.state.session,
        principal.workspace_id,
        parse_path_id("enrollment_job", enrollment_job_id, "enrollment job"),
    )
