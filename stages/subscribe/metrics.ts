/** Metrics of the subscribers (gRPC and SSE) a door process serves. */
import { Counter, Gauge } from 'prom-client';
import { registry } from '../../pipeline/metrics.ts';

export const subscribeMetrics = {
  subscribers: new Gauge({
    name: 'atlas_subscribers',
    help: 'Subscribers (gRPC and SSE) this process is delivering to',
    registers: [registry],
  }),
  delivered: new Counter({
    name: 'atlas_subscriber_deliveries_total',
    help: 'Events delivered to subscribers; redelivered="true" for ones delivered before and not acknowledged',
    labelNames: ['redelivered'],
    registers: [registry],
  }),
  acknowledged: new Counter({
    name: 'atlas_subscriber_acks_total',
    help: 'Events subscribers acknowledged',
    registers: [registry],
  }),
  groupsExpired: new Counter({
    name: 'atlas_subscriber_groups_expired_total',
    help: 'Subscriber groups deleted because no member read from them within ATLAS_SUBSCRIBE_GROUP_TTL_S',
    registers: [registry],
  }),
  lost: new Counter({
    name: 'atlas_subscriber_events_lost_total',
    help: 'Events deleted before a subscriber group acknowledged them (only after the group expired): not delivered',
    registers: [registry],
  }),
};
