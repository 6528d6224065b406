"""Onboarding: create a user remotely, compute a tax rate inline, provision in parallel, wait,
then send a welcome email that is retried if the provider is busy."""

from __future__ import annotations

import hashlib
import logging

from pydantic import BaseModel

from orchestrator import RetryPolicy, WorkflowContext, current_step, rpc, workflow

log = logging.getLogger(__name__)

_EU_DOMAINS = (".eu", ".de", ".fr", ".es", ".it", ".nl", ".ie")


class OnboardingInput(BaseModel):
    email: str
    # Makes the email provider refuse the first attempt, to show a retry (demo and tests).
    simulate_busy_provider: bool = False


class ProviderBusy(Exception):
    """A transient error: worth retrying."""


@rpc("users.create")
def create_user(data: dict[str, str]) -> dict[str, str]:
    email = data["email"]
    # Derived from the email, so a retried step creates the same user (idempotent).
    user_id = "u_" + hashlib.sha256(email.encode()).hexdigest()[:12]
    region = "EU" if email.endswith(_EU_DOMAINS) else "US"
    return {"id": user_id, "email": email, "region": region}


@rpc("workspaces.create")
def create_workspace(data: dict[str, str]) -> dict[str, str]:
    return {"workspace": f"ws-{data['user_id']}"}


@rpc("newsletter.subscribe")
def subscribe_newsletter(data: dict[str, str]) -> dict[str, str]:
    return {"list": "weekly", "email": data["email"]}


@rpc("email.send")
def send_email(data: dict[str, object]) -> dict[str, object]:
    step = current_step()
    if data.get("simulate_busy") and step is not None and step.attempt == 1:
        raise ProviderBusy("the email provider is rate limiting (simulated)")
    # The step's idempotency key lets the provider drop a duplicate send after a retry.
    key = step.idempotency_key if step else None
    log.info("sending welcome email to %s (idempotency key %s)", data["to"], key)
    return {"to": data["to"], "status": "sent", "idempotency_key": key}


EMAIL_RETRY = RetryPolicy(max_attempts=5, initial_delay="200ms", retry_on=(ProviderBusy,))


@workflow("onboarding")
def onboarding(ctx: WorkflowContext, data: OnboardingInput) -> dict[str, object]:
    user = ctx.do("createUser", "users.create", {"email": data.email})
    rate = ctx.do("calcTax", lambda: 0.2 if user["region"] == "EU" else 0.08)
    workspace, _ = ctx.gather(
        ctx.step("createWorkspace", create_workspace, {"user_id": user["id"]}),
        ctx.step("subscribeNewsletter", subscribe_newsletter, {"email": user["email"]}),
    )
    ctx.sleep("cooldown", "2s")
    ctx.do(
        "sendEmail",
        send_email,
        {"to": user["email"], "simulate_busy": data.simulate_busy_provider},
        retry=EMAIL_RETRY,
    )
    return {"user_id": user["id"], "tax_rate": rate, "workspace": workspace["workspace"]}
