// `discount-js` (step): the discount on an order.
//
// input:  {"order_id": "o-1", "amount": 1500}
// config: {"rate": 0.1, "min_amount": 1000, "max_discount": 500}   (all optional: 0.1, 1000, none)
// result: {"order_id", "amount", "discount", "total"}; orders under min_amount get no discount.
// A missing or negative amount is a fatal error, code `bad_input`.
import { exportStep, StepError, log } from './orca.js';

const round2 = (x) => Math.round(x * 100) / 100;

export const step = exportStep((ctx) => {
  const { order_id, amount } = ctx.input || {};
  if (typeof amount !== 'number' || !(amount >= 0)) {
    throw new StepError(`input.amount must be a non-negative number, got ${JSON.stringify(amount)}`, { code: 'bad_input' });
  }
  const { rate = 0.1, min_amount = 1000, max_discount } = ctx.config;
  let discount = amount >= min_amount ? round2(amount * rate) : 0;
  if (typeof max_discount === 'number') discount = Math.min(discount, max_discount);
  log.info('discount computed', { order_id, amount, discount });
  return { order_id, amount, discount, total: round2(amount - discount) };
});
