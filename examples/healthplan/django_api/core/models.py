"""Read-only mirrors of tables Flask owns (public schema). Django never migrates them."""

from django.db import models


class Plan(models.Model):
    id = models.AutoField(primary_key=True)
    code = models.CharField(max_length=20, unique=True)
    name = models.CharField(max_length=120)
    tier = models.CharField(max_length=20)
    monthly_premium = models.DecimalField(max_digits=10, decimal_places=2)
    deductible = models.DecimalField(max_digits=10, decimal_places=2)
    active = models.BooleanField()

    class Meta:
        managed = False
        db_table = 'public"."plans'

    def __str__(self) -> str:
        return self.name


class Member(models.Model):
    id = models.AutoField(primary_key=True)
    member_number = models.CharField(max_length=20, unique=True)
    first_name = models.CharField(max_length=80)
    last_name = models.CharField(max_length=80)
    date_of_birth = models.DateField()
    email = models.CharField(max_length=255, null=True)
    phone = models.CharField(max_length=32, null=True)
    created_at = models.DateTimeField()

    class Meta:
        managed = False
        db_table = 'public"."members'

    def __str__(self) -> str:
        return f"{self.member_number} {self.first_name} {self.last_name}"
