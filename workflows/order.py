"""Orders: reserve stock, wait for a manager's approval on large orders, charge the card
(retrying gateway hiccups, never a decline), ship. A declined card or a rejected order
releases the reserved stock (a compensating step) and fails the run, naming the step."""

from __future__ import annotations

from pydantic import BaseModel, Field

from orchestrator import (
    EventTimeout,
    RetryPolicy,
    StepFailedError,
    WorkflowContext,
    current_step,
    rpc,
    workflow,
)

APPROVAL_ABOVE_CENTS = 100_000


class OrderInput(BaseModel):
    order_id: str
    sku: str
    quantity: int = Field(gt=0)
    amount_cents: int = Field(gt=0)
    card: str


class PaymentDeclined(Exception):
    """Final: the bank said no."""


class GatewayTimeout(Exception):
    """Transient: worth retrying."""


class OrderRejected(Exception):
    pass


@rpc("inventory.reserve")
def reserve_stock(data: dict[str, object]) -> dict[str, object]:
    return {
        "reservation": f"r-{data['order_id']}",
        "sku": data["sku"],
        "quantity": data["quantity"],
    }


@rpc("inventory.release")
def release_stock(data: dict[str, object]) -> dict[str, object]:
    return {"released": data["reservation"]}


@rpc("payments.charge")
def charge_card(data: dict[str, object]) -> dict[str, object]:
    # Test card numbers, as payment providers offer: one always declined, one whose gateway
    # times out on the first try.
    if data["card"] == "4000000000000002":
        raise PaymentDeclined(f"card declined for {data['amount_cents']} cents")
    step = current_step()
    if data["card"] == "4000000000000119" and step is not None and step.attempt == 1:
        raise GatewayTimeout("payment gateway timed out")
    return {"charge_id": f"ch-{data['order_id']}", "amount_cents": data["amount_cents"]}


@rpc("shipping.ship")
def ship(data: dict[str, object]) -> dict[str, object]:
    return {"tracking": f"TRACK-{data['order_id']}"}


CHARGE_RETRY = RetryPolicy(
    max_attempts=4,
    initial_delay="500ms",
    retry_on=(GatewayTimeout,),
    non_retryable=(PaymentDeclined,),
)


@workflow("order")
def order(ctx: WorkflowContext, data: OrderInput) -> dict[str, object]:
    reservation = ctx.do(
        "reserveStock",
        reserve_stock,
        {"order_id": data.order_id, "sku": data.sku, "quantity": data.quantity},
    )
    try:
        if data.amount_cents > APPROVAL_ABOVE_CENTS:
            try:
                decision = ctx.wait_for_event("approval", timeout="1d")
            except EventTimeout:
                decision = {"approved": False, "by": "nobody within a day"}
            if not decision.get("approved"):
                raise OrderRejected(f"order {data.order_id} rejected by {decision.get('by')}")
        charge = ctx.do(
            "chargeCard",
            charge_card,
            {"order_id": data.order_id, "amount_cents": data.amount_cents, "card": data.card},
            retry=CHARGE_RETRY,
        )
    except (StepFailedError, OrderRejected):
        ctx.do("releaseStock", release_stock, {"reservation": reservation["reservation"]})
        raise
    shipment = ctx.do("ship", "shipping.ship", {"order_id": data.order_id})
    return {"charge_id": charge["charge_id"], "tracking": shipment["tracking"]}
