import { Code } from "@connectrpc/connect";
import { useQuery } from "@connectrpc/connect-query";
import { useQueryClient } from "@tanstack/react-query";
import { createContext, type ReactNode, useContext, useEffect } from "react";
import { Navigate, useLocation, useNavigate } from "react-router";
import { AuthService, type WhoAmIResponse } from "../../../gen/myosicam/panel/v1/auth_pb.js";
import { Role } from "../../../gen/myosicam/panel/v1/common_pb.js";
import { errorText, isCode } from "../api/errors";
import { sessionEvents } from "../api/transport";

const IdentityContext = createContext<WhoAmIResponse | undefined>(undefined);

/** Who is signed in (only inside `RequireSignIn`). */
export function useIdentity(): WhoAmIResponse {
  const identity = useContext(IdentityContext);
  if (!identity) throw new Error("useIdentity outside RequireSignIn");
  return identity;
}

export const hasRole = (identity: WhoAmIResponse, role: Role) => identity.role >= role;
export const useCan = (role: Role) => hasRole(useIdentity(), role);
export const isScoped = (identity: WhoAmIResponse) => (identity.scope?.serverIds.length ?? 0) + (identity.scope?.tags.length ?? 0) > 0;

/** Where sign-in sends the user back to. */
export const returnPath = (location: { pathname: string; search: string }) => location.pathname + location.search;

/**
 * Shows its children only to a signed-in operator who needs no new password; otherwise goes to
 * sign-in (remembering the page) or to the password change. A session that ends while a page is
 * open (any call answered Unauthenticated) brings the user back to sign-in the same way.
 */
export function RequireSignIn({ children }: { children: ReactNode }) {
  const location = useLocation();
  const navigate = useNavigate();
  const queryClient = useQueryClient();
  const whoAmI = useQuery(AuthService.method.whoAmI, {}, { retry: false, staleTime: 30_000 });

  useEffect(() => {
    const expired = () => {
      const next = returnPath(window.location);
      queryClient.clear();
      navigate(`/login?expired=1&next=${encodeURIComponent(next)}`, { replace: true });
    };
    sessionEvents.addEventListener("expired", expired);
    return () => sessionEvents.removeEventListener("expired", expired);
  }, [navigate, queryClient]);

  if (whoAmI.isPending) return <p className="splash">Loading…</p>;
  if (whoAmI.error) {
    if (isCode(whoAmI.error, Code.Unauthenticated)) return <Navigate to={`/login?next=${encodeURIComponent(returnPath(location))}`} replace />;
    return (
      <div className="splash" role="alert">
        <p>{errorText(whoAmI.error)}</p>
        <button type="button" onClick={() => whoAmI.refetch()}>
          Try again
        </button>
      </div>
    );
  }
  if (whoAmI.data.mustChangePassword) return <Navigate to={`/change-password?next=${encodeURIComponent(returnPath(location))}`} replace />;
  return <IdentityContext.Provider value={whoAmI.data}>{children}</IdentityContext.Provider>;
}

export const roleNames: Record<Role, string> = {
  [Role.UNSPECIFIED]: "—",
  [Role.VIEWER]: "viewer",
  [Role.OPERATOR]: "operator",
  [Role.ADMIN]: "admin",
  [Role.OWNER]: "owner",
};
