import { type ReactNode, useEffect, useId, useRef, useState } from "react";
import { errorText } from "../api/errors";

/** A result line under an action: busy, failed (the API's words) or done. */
export function Outcome({ pending, error, done, pendingText = "Working…" }: { pending?: boolean; error?: unknown; done?: ReactNode; pendingText?: string }) {
  if (pending)
    return (
      <p className="notice info" role="status">
        {pendingText}
      </p>
    );
  if (error)
    return (
      <p className="notice error" role="alert">
        {errorText(error)}
      </p>
    );
  if (done)
    return (
      <div className="notice ok" role="status">
        {done}
      </div>
    );
  return null;
}

/** What a page says when it has nothing to show: why, and what to do next. */
export function Empty({ title, children }: { title: string; children?: ReactNode }) {
  return (
    <div className="empty">
      <p className="empty-title">{title}</p>
      {children && <div className="empty-next">{children}</div>}
    </div>
  );
}

const tones: Record<string, string> = {
  online: "ok",
  running: "ok",
  applied: "ok",
  succeeded: "ok",
  active: "ok",
  reachable: "ok",
  unchanged: "muted",
  new: "muted",
  stopped: "muted",
  gone: "muted",
  disabled: "muted",
  pending: "warn",
  delivered: "info",
  sent: "info",
  queued: "info",
  "in progress": "info",
  expiring: "warn",
  grace: "warn",
  "over quota": "warn",
  "partially failed": "warn",
  unreachable: "bad",
  failed: "bad",
  expired: "bad",
  revoked: "bad",
  invalid: "bad",
  cancelled: "muted",
  completed: "ok",
  paused: "warn",
  halted: "bad",
  waiting: "muted",
  skipped: "muted",
};

/** A status word with its colour; fixed width so live changes do not move the row. */
export function Badge({ word }: { word: string }) {
  return <span className={`badge ${tones[word] ?? "muted"}`}>{word}</span>;
}

/** A modal question with a clear verb; `children` may hold inputs the answer needs. */
export function ConfirmDialog(props: {
  open: boolean;
  title: string;
  confirmLabel: string;
  danger?: boolean;
  busy?: boolean;
  disabled?: boolean;
  onConfirm(): void;
  onClose(): void;
  children?: ReactNode;
}) {
  const ref = useRef<HTMLDialogElement>(null);
  const titleId = useId();
  useEffect(() => {
    const dialog = ref.current;
    if (props.open && dialog && !dialog.open) dialog.showModal();
  }, [props.open]);
  // Only an open question is in the page: closed ones leave nothing behind (no stale titles).
  if (!props.open) return null;
  return (
    <dialog ref={ref} aria-labelledby={titleId} onClose={props.onClose} onCancel={props.onClose}>
      <form
        method="dialog"
        onSubmit={(e) => {
          e.preventDefault();
          props.onConfirm();
        }}
      >
        <h2 id={titleId}>{props.title}</h2>
        {props.children}
        <div className="actions">
          <button type="button" onClick={props.onClose}>
            Cancel
          </button>
          <button type="submit" className={props.danger ? "danger" : "primary"} disabled={props.busy || props.disabled}>
            {props.busy ? "Working…" : props.confirmLabel}
          </button>
        </div>
      </form>
    </dialog>
  );
}

/** A secret shown once: selectable, with a copy button and the warning that it will not come back. */
export function ShownOnce({ label, value, multiline }: { label: string; value: string; multiline?: boolean }) {
  const [copied, setCopied] = useState(false);
  const id = useId();
  return (
    <div className="shown-once">
      <label htmlFor={id}>{label}</label>
      {multiline ? (
        <textarea id={id} readOnly value={value} rows={Math.min(8, value.split("\n").length + 1)} onFocus={(e) => e.currentTarget.select()} />
      ) : (
        <input id={id} readOnly value={value} onFocus={(e) => e.currentTarget.select()} />
      )}
      <div className="row">
        <button
          type="button"
          onClick={() =>
            navigator.clipboard?.writeText(value).then(
              () => setCopied(true),
              () => setCopied(false),
            )
          }
        >
          {copied ? "Copied" : "Copy"}
        </button>
        <span className="hint">Shown once: it cannot be shown again.</span>
      </div>
    </div>
  );
}

/** A table's box that scrolls sideways on narrow screens; focusable so the keyboard can scroll it. */
export const scrollRegion = (label: string) => ({ className: "table-wrap", tabIndex: 0, role: "region", "aria-label": label });

/** Previous / next over cursor pages. */
export function Pager(props: { hasPrevious: boolean; hasNext: boolean; onPrevious(): void; onNext(): void; summary?: ReactNode }) {
  return (
    <nav className="pager" aria-label="Pages">
      <span className="pager-summary">{props.summary}</span>
      <button type="button" disabled={!props.hasPrevious} onClick={props.onPrevious}>
        ← Previous
      </button>
      <button type="button" disabled={!props.hasNext} onClick={props.onNext}>
        Next →
      </button>
    </nav>
  );
}

/** Tabs that keep the chosen one in the URL (`?tab=`), so a link opens it. */
export function Tabs({ tabs, current, onChange }: { tabs: Array<{ id: string; label: string }>; current: string; onChange(id: string): void }) {
  return (
    <div className="tabs" role="tablist">
      {tabs.map((t) => (
        <button
          key={t.id}
          type="button"
          role="tab"
          aria-selected={t.id === current}
          className={t.id === current ? "current" : ""}
          onClick={() => onChange(t.id)}
        >
          {t.label}
        </button>
      ))}
    </div>
  );
}

/** Downloads text as a file (CSV exports). */
export function download(name: string, parts: BlobPart[], type = "text/csv") {
  const url = URL.createObjectURL(new Blob(parts, { type }));
  const a = document.createElement("a");
  a.href = url;
  a.download = name;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}
