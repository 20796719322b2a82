import { Module } from '@nestjs/common';
import { RefreshPlanner } from './refresh-planner';

/** Keeps tokens fresh: when to refresh (RefreshPlanner) and, later, the engine and scheduler. */
@Module({ providers: [RefreshPlanner], exports: [RefreshPlanner] })
export class RefreshModule {}
