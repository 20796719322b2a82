import { CreateConnections1795443000000 } from './1795443000000-CreateConnections';
import { CreateConnectFlow1795443600000 } from './1795443600000-CreateConnectFlow';
import { NotifyConnectionChanges1795444800000 } from './1795444800000-NotifyConnectionChanges';
import { TrackSealedKeyIds1795450000000 } from './1795450000000-TrackSealedKeyIds';
import { CreateAuditEvents1795460000000 } from './1795460000000-CreateAuditEvents';
import { StaticCredentials1795470000000 } from './1795470000000-StaticCredentials';
import { DerivedTokens1795470100000 } from './1795470100000-DerivedTokens';
import { ConnectSessionAuthMode1795470200000 } from './1795470200000-ConnectSessionAuthMode';
import { CreateLifecycleEvents1795480000000 } from './1795480000000-CreateLifecycleEvents';

/** Every migration, in order. A new migration file is added here too. */
export const MIGRATIONS: Array<new () => unknown> = [
  CreateConnections1795443000000,
  CreateConnectFlow1795443600000,
  NotifyConnectionChanges1795444800000,
  TrackSealedKeyIds1795450000000,
  CreateAuditEvents1795460000000,
  StaticCredentials1795470000000,
  DerivedTokens1795470100000,
  ConnectSessionAuthMode1795470200000,
  CreateLifecycleEvents1795480000000,
];
