import { useMutation, useQuery } from "@connectrpc/connect-query";
import { useQueryClient } from "@tanstack/react-query";
import { lazy, Suspense } from "react";
import { NavLink, Outlet, Route, Routes, useNavigate } from "react-router";
import { AlertService } from "../../../gen/myosicam/panel/v1/alert_pb.js";
import { AuthService } from "../../../gen/myosicam/panel/v1/auth_pb.js";
import { Role } from "../../../gen/myosicam/panel/v1/common_pb.js";
import { LiveUpdates, useLive } from "../api/live";
import { OverviewPage } from "../pages/Overview";
import { ChangePasswordPage, SignInPage } from "../pages/SignIn";
import { hasRole, isScoped, RequireSignIn, roleNames, useIdentity } from "./session";

// Pages past the overview load when first opened: the first load stays small.
const ServerPage = lazy(() => import("../pages/ServerPage").then((m) => ({ default: m.ServerPage })));
const AccountsPage = lazy(() => import("../pages/Accounts").then((m) => ({ default: m.AccountsPage })));
const ChangeSetPage = lazy(() => import("../pages/ChangeSet").then((m) => ({ default: m.ChangeSetPage })));
const InstallPage = lazy(() => import("../pages/Install").then((m) => ({ default: m.InstallPage })));
const ActivityPage = lazy(() => import("../pages/Activity").then((m) => ({ default: m.ActivityPage })));
const AgentsPage = lazy(() => import("../pages/Agents").then((m) => ({ default: m.AgentsPage })));
const RolloutPage = lazy(() => import("../pages/Agents").then((m) => ({ default: m.RolloutPage })));
const SettingsPage = lazy(() => import("../pages/Settings").then((m) => ({ default: m.SettingsPage })));

export function App() {
  return (
    <Routes>
      <Route path="/login" element={<SignInPage />} />
      <Route path="/change-password" element={<ChangePasswordPage />} />
      <Route
        element={
          <RequireSignIn>
            <LiveUpdates>
              <Shell />
            </LiveUpdates>
          </RequireSignIn>
        }
      >
        <Route index element={<OverviewPage />} />
        <Route path="servers/:serverId" element={<ServerPage />} />
        <Route path="accounts" element={<AccountsPage />} />
        <Route path="change-sets/:changeSetId" element={<ChangeSetPage />} />
        <Route path="install" element={<InstallPage />} />
        <Route path="activity" element={<ActivityPage />} />
        <Route path="agents" element={<AgentsPage />} />
        <Route path="rollouts/:rolloutId" element={<RolloutPage />} />
        <Route path="settings" element={<SettingsPage />} />
        <Route path="*" element={<NotFound />} />
      </Route>
    </Routes>
  );
}

function NotFound() {
  return (
    <section>
      <h1>Not found</h1>
      <p>
        There is no page here. Go to the <NavLink to="/">fleet overview</NavLink>.
      </p>
    </section>
  );
}

function Shell() {
  const identity = useIdentity();
  const live = useLive();
  const navigate = useNavigate();
  const queryClient = useQueryClient();
  const alerts = useQuery(AlertService.method.listAlerts, { unacknowledgedOnly: true, pageSize: 1 });
  const logout = useMutation(AuthService.method.logout, {
    onSettled: () => {
      queryClient.clear();
      navigate("/login", { replace: true });
    },
  });
  const open = alerts.data?.unacknowledged ?? 0;
  return (
    <div className="shell">
      <a className="skip" href="#main">
        Skip to content
      </a>
      <header className="topbar">
        <span className="brand">MyOsicam</span>
        <span className={`live ${live.state}`} role="status" title="Live updates from the panel">
          {live.state === "live" ? "● live" : live.state === "connecting" ? "○ connecting" : "○ reconnecting…"}
        </span>
        <span className="who">
          {identity.name} · {roleNames[identity.role]}
        </span>
        <button type="button" onClick={() => logout.mutate({})} disabled={logout.isPending}>
          Sign out
        </button>
      </header>
      <nav className="sidebar" aria-label="Main">
        <NavLink to="/" end>
          Fleet
        </NavLink>
        <NavLink to="/accounts">Accounts</NavLink>
        {hasRole(identity, Role.OPERATOR) && !isScoped(identity) && <NavLink to="/install">Install a server</NavLink>}
        <NavLink to="/activity">
          Activity{" "}
          {open > 0 && (
            <span className="count">
              {open}
              <span className="sr-only"> open alerts</span>
            </span>
          )}
        </NavLink>
        <NavLink to="/agents">Agents</NavLink>
        <NavLink to="/settings">Settings</NavLink>
      </nav>
      <main id="main" tabIndex={-1}>
        <Suspense fallback={<p className="splash">Loading…</p>}>
          <Outlet />
        </Suspense>
      </main>
    </div>
  );
}
