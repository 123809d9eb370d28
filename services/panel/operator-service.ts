import { randomUUID } from "node:crypto";
import { Code, ConnectError, type HandlerContext, type ServiceImpl } from "@connectrpc/connect";
import type { OperatorService } from "../../gen/myosicam/panel/v1/operator_pb.js";
import type { Knex } from "../lib/db.js";
import { generatePassword, hashPassword } from "../lib/passwords.js";
import { principalOf, roleAtLeast, writeDb, type Principal, type RoleName } from "../lib/principal.js";
import { operatorMessage, roleName, scopeFrom } from "./messages.js";
import {
  capApiClientRoles,
  deleteOperator,
  deleteOperatorSessions,
  insertOperator,
  lockActiveOwners,
  revokeApiClientsOf,
  selectOperator,
  selectOperators,
  updateOperatorAccess,
  updateOperatorDisabled,
  updateOperatorPassword,
  type OperatorRow,
} from "./store.js";

const notFound = (id: string) => new ConnectError(`no operator ${id}; see OperatorService.ListOperators`, Code.NotFound);

/** No one grants a role above their own, and only an owner acts on owners. */
function checkMayGrant(actor: Principal, role: RoleName): void {
  if (!roleAtLeast(actor.role, role)) throw new ConnectError(`you cannot grant the ${role} role: it is above your own (${actor.role})`, Code.PermissionDenied);
}

function checkMayManage(actor: Principal, target: OperatorRow): void {
  if (target.role === "owner" && actor.role !== "owner") throw new ConnectError("only an owner can change or remove an owner", Code.PermissionDenied);
}

/**
 * Keeps the panel from losing its last owner: with the owners locked for the transaction, refuses
 * when `target` is the only enabled owner and the change would end that.
 */
async function keepAnOwner(trx: Knex, target: OperatorRow, what: string): Promise<void> {
  if (target.role !== "owner" || target.disabled_at !== null) return;
  const owners = await lockActiveOwners(trx);
  if (owners.length <= 1 && owners.includes(target.id)) {
    throw new ConnectError(`${target.email} is the last owner and cannot be ${what}; make another operator owner first`, Code.FailedPrecondition);
  }
}

/** Handlers of `myosicam.panel.v1.OperatorService` (roles and the last-owner rule live here). */
export function createOperatorService(deps: { db: Knex }): ServiceImpl<typeof OperatorService> {
  const { db } = deps;
  const load = async (trx: Knex, id: string) => {
    const row = await selectOperator(trx, id);
    if (!row) throw notFound(id);
    return row;
  };
  const target = (ctx: HandlerContext, id: string) => writeDb(ctx, db, `operator:${id}`);
  return {
    async listOperators() {
      return { operators: (await selectOperators(db)).map(operatorMessage) };
    },

    async createOperator(req, ctx) {
      const actor = principalOf(ctx);
      const role = roleName(req.role);
      checkMayGrant(actor, role);
      const id = randomUUID();
      const password = generatePassword();
      const email = req.email.trim().toLowerCase();
      const row = await insertOperator(target(ctx, id), {
        id,
        email,
        passwordHash: await hashPassword(password),
        role,
        scope: scopeFrom(req.scope),
        mustChangePassword: true,
        createdBy: actor.name,
      });
      if (!row) throw new ConnectError(`an operator ${email} exists already`, Code.AlreadyExists);
      return { operator: operatorMessage(row), oneTimePassword: password };
    },

    async updateOperator(req, ctx) {
      const actor = principalOf(ctx);
      const trx = target(ctx, req.operatorId);
      const current = await load(trx, req.operatorId);
      const role = roleName(req.role);
      checkMayManage(actor, current);
      checkMayGrant(actor, role);
      if (role !== "owner") await keepAnOwner(trx, current, "demoted");
      const row = await updateOperatorAccess(trx, current.id, role, scopeFrom(req.scope));
      // Their API clients act for them: never above their new role.
      await capApiClientRoles(trx, current.id, role);
      return { operator: operatorMessage(row!) };
    },

    async setOperatorDisabled(req, ctx) {
      const actor = principalOf(ctx);
      const trx = target(ctx, req.operatorId);
      const current = await load(trx, req.operatorId);
      checkMayManage(actor, current);
      if (req.disabled) {
        if (current.id === actor.id) throw new ConnectError("you cannot disable yourself; ask another admin", Code.FailedPrecondition);
        await keepAnOwner(trx, current, "disabled");
        await deleteOperatorSessions(trx, current.id);
        writeDb(ctx, db, ...(await revokeApiClientsOf(trx, current.id)).map((id) => `api_client:${id}`));
      }
      const row = await updateOperatorDisabled(trx, current.id, req.disabled);
      return { operator: operatorMessage(row!) };
    },

    async resetOperatorPassword(req, ctx) {
      const actor = principalOf(ctx);
      const trx = target(ctx, req.operatorId);
      const current = await load(trx, req.operatorId);
      checkMayManage(actor, current);
      const password = generatePassword();
      const row = await updateOperatorPassword(trx, current.id, await hashPassword(password), true);
      await deleteOperatorSessions(trx, current.id);
      return { operator: operatorMessage(row!), oneTimePassword: password };
    },

    async deleteOperator(req, ctx) {
      const actor = principalOf(ctx);
      const trx = target(ctx, req.operatorId);
      const current = await load(trx, req.operatorId);
      checkMayManage(actor, current);
      if (current.id === actor.id) throw new ConnectError("you cannot delete yourself; ask another admin", Code.FailedPrecondition);
      await keepAnOwner(trx, current, "deleted");
      writeDb(ctx, db, ...(await revokeApiClientsOf(trx, current.id)).map((id) => `api_client:${id}`));
      await deleteOperator(trx, current.id);
      return {};
    },
  };
}
