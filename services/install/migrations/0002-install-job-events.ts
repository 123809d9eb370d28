import type { Migration } from "../../lib/db.js";

/**
 * Install and uninstall jobs as fleet events (FleetService.WatchEvents): a trigger on the job
 * table announces each state change and step of this service's queues, through the agents
 * service's `fleet_event` function. Log lines stay in WatchInstallJob.
 */
export const installJobEvents: Migration = {
  name: "install/0002_install_job_events",
  async up(db) {
    await db.raw(`
      create function fleet_event_install_job() returns trigger language plpgsql as $$
      begin
        perform fleet_event('install_job', null, jsonb_build_object('job_id', new.id, 'queue', new.queue, 'state', new.state, 'step', new.step, 'percent', new.percent, 'error', new.error));
        return new;
      end $$;
      create trigger job_runs_install_event after insert on job_runs for each row
        when (new.queue in ('install.agent', 'install.uninstall')) execute function fleet_event_install_job();
      create trigger job_runs_install_event_update after update on job_runs for each row
        when (new.queue in ('install.agent', 'install.uninstall')
          and (old.state is distinct from new.state or old.step is distinct from new.step or old.percent is distinct from new.percent))
        execute function fleet_event_install_job();
    `);
  },
};
