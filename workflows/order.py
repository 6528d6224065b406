"""Orders: reserve stock, charge the card, ship. A declined card fails the charge step; the
workflow releases the reserved stock (a compensating step) and fails naming the step."""

from __future__ import annotations

from pydantic import BaseModel, Field

from orchestrator import StepFailedError, WorkflowContext, rpc, workflow


class OrderInput(BaseModel):
    order_id: str
    sku: str
    quantity: int = Field(gt=0)
    amount_cents: int = Field(gt=0)
    card: str


class PaymentDeclined(Exception):
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
    # A test card number that is always declined, as payment providers offer.
    if data["card"] == "4000000000000002":
        raise PaymentDeclined(f"card declined for {data['amount_cents']} cents")
    return {"charge_id": f"ch-{data['order_id']}", "amount_cents": data["amount_cents"]}


@rpc("shipping.ship")
def ship(data: dict[str, object]) -> dict[str, object]:
    return {"tracking": f"TRACK-{data['order_id']}"}


@workflow("order")
def order(ctx: WorkflowContext, data: OrderInput) -> dict[str, object]:
    reservation = ctx.do(
        "reserveStock",
        reserve_stock,
        {"order_id": data.order_id, "sku": data.sku, "quantity": data.quantity},
    )
    try:
        charge = ctx.do(
            "chargeCard",
            charge_card,
            {"order_id": data.order_id, "amount_cents": data.amount_cents, "card": data.card},
        )
    except StepFailedError:
        ctx.do("releaseStock", release_stock, {"reservation": reservation["reservation"]})
        raise
    shipment = ctx.do("ship", "shipping.ship", {"order_id": data.order_id})
    return {"charge_id": charge["charge_id"], "tracking": shipment["tracking"]}
