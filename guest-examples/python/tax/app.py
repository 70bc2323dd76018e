"""`tax-python` (step): computes the tax of an order, once per execution.

input:  {"order_id": "o-1", "amount": 120.0, "region": "EU"}   (region optional)
config: {"rates": {"EU": 0.21, "default": 0.2}, "default_region": "default"}   (both optional)
result: {"order_id", "region", "rate", "tax", "total", "cached"}

The result is kept in execution state under `tax:<order_id>`; a retry of the step reuses it
(`"cached": true`). An unknown region without a `default` rate is a fatal error, code
`unknown_region`; a missing or negative amount is fatal, code `bad_input`.
"""

import orca


def tax(ctx: orca.Context):
    order = ctx.input or {}
    amount = order.get("amount")
    if not isinstance(amount, (int, float)) or amount < 0:
        raise orca.StepError(f"input.amount must be a non-negative number, got {amount!r}", code="bad_input")
    rates = ctx.config.get("rates") or {"default": 0.2}
    region = order.get("region") or ctx.config.get("default_region", "default")
    rate = rates.get(region, rates.get("default"))
    if rate is None:
        raise orca.StepError(f"no tax rate for region {region!r}", code="unknown_region")

    key = f"tax:{order.get('order_id', '')}"
    cached = orca.state.get_json("execution", key)
    if cached is not None:
        orca.log.info("reusing the tax computed earlier", key=key, attempt=ctx.attempt)
        return {**cached, "cached": True}

    tax = round(amount * rate, 2)
    result = {"order_id": order.get("order_id"), "region": region, "rate": rate, "tax": tax,
              "total": round(amount + tax, 2)}
    orca.state.set_json("execution", key, result)
    orca.log.info("computed tax", order_id=result["order_id"], region=region, tax=tax)
    return {**result, "cached": False}


Step = orca.export_step(tax)
