import { timingSafeEqual } from "node:crypto";
import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import type { CryptoService } from "../../gen/myosicam/crypto/v1/crypto_pb.js";
import type { Knex } from "../lib/db.js";
import { EnvelopeError, type EncryptionContext } from "../lib/secrets/envelope.js";
import { encryptedColumns } from "./encrypted-columns.js";
import type { Keyring } from "../lib/secrets/keyring.js";
import { countByKeyId } from "../lib/secrets/store.js";

export interface CryptoDeps {
  keyring: Keyring;
  /** The panel database, for KeyStatus counts. */
  db: Knex;
}

const codes: Record<EnvelopeError["kind"], Code> = {
  malformed: Code.InvalidArgument,
  unknown_key: Code.FailedPrecondition,
  tampered: Code.DataLoss,
};

/** The same codes as DecryptBatch names them (Connect's wire names). */
const codeNames: Record<EnvelopeError["kind"], string> = {
  malformed: "invalid_argument",
  unknown_key: "failed_precondition",
  tampered: "data_loss",
};

/** Handlers of `myosicam.crypto.v1.CryptoService`. */
export function createCryptoService(deps: CryptoDeps): ServiceImpl<typeof CryptoService> {
  const { keyring, db } = deps;
  return {
    encrypt(req) {
      return { envelope: sealUnlessCurrent(keyring, req), keyId: keyring.activeKeyId };
    },
    encryptBatch(req) {
      const envelopes = req.items.map((item) => sealUnlessCurrent(keyring, item));
      return { envelopes, keyId: keyring.activeKeyId };
    },
    decrypt(req) {
      try {
        const opened = keyring.open(req.envelope, contextOf(req.context));
        return { plaintext: opened.plaintext, keyId: opened.keyId, sealedWithPreviousKey: opened.sealedWithPrevious };
      } catch (err) {
        if (err instanceof EnvelopeError) throw new ConnectError(err.message, codes[err.kind]);
        throw err;
      }
    },
    decryptBatch(req) {
      return {
        results: req.items.map((item) => {
          try {
            const opened = keyring.open(item.envelope, contextOf(item.context));
            return {
              result: {
                case: "opened" as const,
                value: { plaintext: opened.plaintext, keyId: opened.keyId, sealedWithPreviousKey: opened.sealedWithPrevious },
              },
            };
          } catch (err) {
            if (!(err instanceof EnvelopeError)) throw err;
            return { result: { case: "failure" as const, value: { code: codeNames[err.kind], message: err.message } } };
          }
        }),
      };
    },
    async keyStatus() {
      const columns = [];
      for (const c of encryptedColumns) {
        for (const { keyId, count } of await countByKeyId(db, c)) {
          columns.push({ table: c.table, column: c.column, keyId, count: BigInt(count) });
        }
      }
      return { activeKeyId: keyring.activeKeyId, previousKeyId: keyring.previousKeyId ?? "", columns };
    },
  };
}

const registered = new Set(encryptedColumns.map((c) => `${c.table}.${c.column}`));

/** A fresh envelope, or `current` when it already holds this plaintext under the active key. */
function sealUnlessCurrent(
  keyring: Keyring,
  item: { plaintext: Uint8Array; context?: { table: string; column: string; rowId: string }; current: string },
): string {
  const context = contextOf(item.context);
  if (!registered.has(`${context.table}.${context.column}`)) {
    throw new ConnectError(
      `${context.table}.${context.column} is not a registered encrypted column: add it to services/crypto/encrypted-columns.ts so key rotation re-seals it`,
      Code.InvalidArgument,
    );
  }
  if (item.current) {
    try {
      const opened = keyring.open(item.current, context);
      if (!opened.sealedWithPrevious && opened.plaintext.length === item.plaintext.length && timingSafeEqual(opened.plaintext, item.plaintext))
        return item.current;
    } catch (err) {
      // An envelope that does not open here is simply replaced.
      if (!(err instanceof EnvelopeError)) throw err;
    }
  }
  return keyring.seal(item.plaintext, context);
}

function contextOf(context: { table: string; column: string; rowId: string } | undefined): EncryptionContext {
  // protovalidate has already required it; this keeps the types honest.
  if (!context) throw new ConnectError("context is required", Code.InvalidArgument);
  return { table: context.table, column: context.column, rowId: context.rowId };
}
