import { Code } from "@connectrpc/connect";
import { useMutation } from "@connectrpc/connect-query";
import { useQueryClient } from "@tanstack/react-query";
import { type FormEvent, useState } from "react";
import { useNavigate, useSearchParams } from "react-router";
import { AuthService } from "../../../gen/myosicam/panel/v1/auth_pb.js";
import { errorText, isCode } from "../api/errors";

/** Only paths of this console, so a crafted `next` cannot send the user elsewhere. */
export const safeNext = (next: string | null) => (next?.startsWith("/") && !next.startsWith("//") ? next : "/");

export function SignInPage() {
  const [params] = useSearchParams();
  const navigate = useNavigate();
  const queryClient = useQueryClient();
  const [email, setEmail] = useState("");
  const [password, setPassword] = useState("");
  const login = useMutation(AuthService.method.login);
  const next = safeNext(params.get("next"));

  const submit = (e: FormEvent) => {
    e.preventDefault();
    login.mutate(
      { email: email.trim(), password },
      {
        onSuccess: (res) => {
          setPassword("");
          queryClient.clear();
          navigate(res.identity?.mustChangePassword ? `/change-password?next=${encodeURIComponent(next)}` : next, { replace: true });
        },
        onError: () => setPassword(""),
      },
    );
  };

  const limited = isCode(login.error, Code.ResourceExhausted);
  return (
    <main className="auth-page">
      <form className="auth-card" onSubmit={submit} aria-labelledby="signin-title">
        <h1 id="signin-title">Sign in to MyOsicam</h1>
        {params.get("expired") && !login.error && (
          <p className="notice info" role="status">
            Your session ended. Sign in again to go back to where you were.
          </p>
        )}
        {login.error && (
          <p className={`notice ${limited ? "warn" : "error"}`} role="alert">
            {errorText(login.error)}
          </p>
        )}
        <label>
          E-mail
          <input type="email" autoComplete="username" required value={email} onChange={(e) => setEmail(e.target.value)} />
        </label>
        <label>
          Password
          <input type="password" autoComplete="current-password" required value={password} onChange={(e) => setPassword(e.target.value)} />
        </label>
        <button type="submit" className="primary" disabled={login.isPending}>
          {login.isPending ? "Signing in…" : "Sign in"}
        </button>
        <p className="hint">Lost the password? On the panel host: npx myosicam operator reset-password --email &lt;you&gt;</p>
      </form>
    </main>
  );
}

export function ChangePasswordPage() {
  const [params] = useSearchParams();
  const navigate = useNavigate();
  const queryClient = useQueryClient();
  const [current, setCurrent] = useState("");
  const [fresh, setFresh] = useState("");
  const [again, setAgain] = useState("");
  const [mismatch, setMismatch] = useState(false);
  const change = useMutation(AuthService.method.changePassword);
  const submit = (e: FormEvent) => {
    e.preventDefault();
    if (fresh !== again) return setMismatch(true);
    setMismatch(false);
    change.mutate(
      { currentPassword: current, newPassword: fresh },
      {
        onSuccess: async () => {
          await queryClient.invalidateQueries();
          navigate(safeNext(params.get("next")), { replace: true });
        },
      },
    );
  };
  return (
    <main className="auth-page">
      <form className="auth-card" onSubmit={submit} aria-labelledby="pw-title">
        <h1 id="pw-title">Choose a new password</h1>
        <p>Your password was set by someone else or must be renewed. Choose one of at least 12 characters that only you know.</p>
        {mismatch && (
          <p className="notice error" role="alert">
            The two new passwords differ.
          </p>
        )}
        {change.error && (
          <p className="notice error" role="alert">
            {errorText(change.error)}
          </p>
        )}
        <label>
          Current password
          <input type="password" autoComplete="current-password" required value={current} onChange={(e) => setCurrent(e.target.value)} />
        </label>
        <label>
          New password
          <input type="password" autoComplete="new-password" minLength={12} required value={fresh} onChange={(e) => setFresh(e.target.value)} />
        </label>
        <label>
          New password again
          <input type="password" autoComplete="new-password" minLength={12} required value={again} onChange={(e) => setAgain(e.target.value)} />
        </label>
        <button type="submit" className="primary" disabled={change.isPending}>
          {change.isPending ? "Saving…" : "Save password"}
        </button>
      </form>
    </main>
  );
}
