// A storefront written against the types openapi-typescript generates from /openapi.json with
// its default options (`openapi-typescript openapi.json -o api.d.ts`). It is type-checked, not
// run, by tests/api/test_openapi_clients.py: `tsc --noEmit --strict` fails if the schema stops
// saying what the service does (a required field that the server defaults, an error status
// without its problem body, a header that is not declared).
import type { components, paths } from "./api";

type Schemas = components["schemas"];
type Problem = Schemas["Problem"];
type PlaceOrder = paths["/v1/orders"]["post"];
type Order = PlaceOrder["responses"][201]["content"]["application/json"];

// Every error an order can meet is the one Problem, parsed the same way.
type OrderProblem =
  | PlaceOrder["responses"][401]["content"]["application/problem+json"]
  | PlaceOrder["responses"][409]["content"]["application/problem+json"]
  | PlaceOrder["responses"][422]["content"]["application/problem+json"]
  | PlaceOrder["responses"][429]["content"]["application/problem+json"]
  | PlaceOrder["responses"][503]["content"]["application/problem+json"];
const sameProblem = (p: OrderProblem): Problem => p;

// Response headers are declared: a replay says so, a refusal says when to retry.
type Replayed = PlaceOrder["responses"][201]["headers"]["Idempotent-Replayed"];
type RetryAfter = PlaceOrder["responses"][429]["headers"]["Retry-After"];
const retryAfterSeconds: RetryAfter = 2;

export type Placed =
  | { kind: "placed"; order: Order; replayed: boolean }
  | { kind: "short"; offers: { sku: string; available: number }[] }
  | { kind: "invalid"; fields: string[] }
  | { kind: "retry"; afterSeconds: number }
  | { kind: "refused"; problem: Problem };

// Only what is required: priority, ship_policy and external_ref are left to the server.
export const firstOrder: Schemas["OrderIn"] = {
  customer_id: "c-1001",
  lines: [{ sku: "TRAIL-42", quantity: 100 }],
};

// A rename through the merge PUT sends the name and nothing else.
export const rename: Schemas["ProductIn"] = { name: "Trail Runner 42 (2027)" };

export async function placeOrder(
  baseUrl: string,
  apiKey: string,
  order: Schemas["OrderIn"],
  idempotencyKey: string,
): Promise<Placed> {
  const header: NonNullable<PlaceOrder["parameters"]["header"]> = {
    "Idempotency-Key": idempotencyKey,
  };
  const response = await fetch(`${baseUrl}/v1/orders`, {
    method: "POST",
    headers: {
      ...header,
      Authorization: `Bearer ${apiKey}`,
      "Content-Type": "application/json",
    },
    body: JSON.stringify(order),
  });
  if (response.status === 201) {
    const replayed: Replayed | null = response.headers.get("Idempotent-Replayed") as Replayed;
    return { kind: "placed", order: (await response.json()) as Order, replayed: replayed === "true" };
  }
  const problem = sameProblem((await response.json()) as OrderProblem);
  if (problem.code === "insufficient_stock" || problem.code === "backorder_limit_exceeded") {
    const offers = (problem.lines ?? []).map((line) => ({
      sku: line.sku,
      available: line.available ?? 0,
    }));
    return { kind: "short", offers };
  }
  if (problem.code === "validation_error") {
    return { kind: "invalid", fields: (problem.errors ?? []).map((e) => e.field ?? e.loc.join(".")) };
  }
  if (response.status === 429 || response.status === 503) {
    const seconds = Number(response.headers.get("Retry-After") ?? retryAfterSeconds);
    return { kind: "retry", afterSeconds: seconds };
  }
  return { kind: "refused", problem };
}

export function waitingUnits(order: Order): number {
  return order.lines.reduce((sum, line) => sum + line.backordered, 0);
}

export async function backorderedSkus(baseUrl: string, apiKey: string): Promise<string[]> {
  const query: NonNullable<paths["/v1/orders"]["get"]["parameters"]["query"]> = {
    status: "partially_backordered",
    limit: 50,
  };
  const url = `${baseUrl}/v1/orders?status=${query.status}&limit=${query.limit}`;
  const response = await fetch(url, { headers: { Authorization: `Bearer ${apiKey}` } });
  const page: Schemas["OrderPage"] = await response.json();
  return page.data.flatMap((o) => o.lines.filter((l) => l.backordered > 0).map((l) => l.sku));
}
