"""Onboarding: create a user remotely, compute a tax rate inline, wait, send a welcome email."""

from __future__ import annotations

import hashlib
import logging

from pydantic import BaseModel

from orchestrator import WorkflowContext, rpc, workflow

log = logging.getLogger(__name__)

_EU_DOMAINS = (".eu", ".de", ".fr", ".es", ".it", ".nl", ".ie")


class OnboardingInput(BaseModel):
    email: str


@rpc("users.create")
def create_user(data: dict[str, str]) -> dict[str, str]:
    email = data["email"]
    # Derived from the email, so a retried step creates the same user (idempotent).
    user_id = "u_" + hashlib.sha256(email.encode()).hexdigest()[:12]
    region = "EU" if email.endswith(_EU_DOMAINS) else "US"
    return {"id": user_id, "email": email, "region": region}


@rpc("email.send")
def send_email(data: dict[str, str]) -> dict[str, str]:
    log.info("sending welcome email to %s", data["to"])
    return {"to": data["to"], "status": "sent"}


@workflow("onboarding")
def onboarding(ctx: WorkflowContext, data: OnboardingInput) -> dict[str, object]:
    user = ctx.do("createUser", "users.create", {"email": data.email})
    rate = ctx.do("calcTax", lambda: 0.2 if user["region"] == "EU" else 0.08)
    ctx.sleep("cooldown", "2s")
    ctx.do("sendEmail", send_email, {"to": user["email"]})
    return {"user_id": user["id"], "tax_rate": rate}
